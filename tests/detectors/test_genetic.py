"""genetic: nucleotide runs [ACGTN]{50,} that look like DNA, rsIDs with genotypes, VCF and FASTQ/SAM
headers."""

from __future__ import annotations

import base64
import random

import pytest

from .helpers import found

_rng = random.Random(7)
SEQ = "".join(_rng.choice("ACGT") for _ in range(120))
PNG_B64 = "iVBORw0KGgo" + base64.b64encode(bytes(600)).decode()     # runs of AAAA… in a base64 image


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        (SEQ, "$.geneSequence", ["genetic"]),
        (SEQ, "$.remark", ["genetic"]),                                   # a sequence is a sequence anywhere
        (f"测序结果{SEQ}", "text", ["genetic"]),
        ("rs4477212\t1\t82154\tAA", "text", ["genetic"]),                 # 23andMe raw-data line
        ("rs53576 AG", "text", ["genetic"]),
        ("rs1801133", "$.snp", ["genetic"]),
        ("AG", "$.genotype", ["genetic"]),
        ("##fileformat=VCFv4.2", "text", ["genetic"]),
        ("@EAS139:136:FC706VJ:2:2104:15343:197393 1:Y:18:ATCACG", "text", ["genetic"]),
        # near misses
        ("A" * 80, "$.remark", []),                                       # one letter repeated
        ("ACGT" * 10, "$.remark", []),                                    # 40 nt: too short
        (PNG_B64, "$.image", []),                                         # base64 blob, not DNA
        ("rs232 serial port", "text", []),                                # rs + digits without a genotype
        ("GATTACA", "$.geneSequence", []),
    ],
)
def test_genetic_table(engine, text, key_path, expected):
    assert [t for t, _ in found(engine, text, key_path) if t == "genetic"] == expected
