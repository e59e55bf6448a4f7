"""genetic: nucleotide runs [ACGTN]{50,} that look like DNA, rsIDs with genotypes, VCF and FASTQ/SAM
headers.

What one value is (configs/field_types.yaml): a variant with its genotype (a VCF data line per sample,
an rsID with its genotype) or one sequence; file signatures are evidence (Inspection.evidence), no value."""

from __future__ import annotations

import base64
import json
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
        ("##fileformat=VCFv4.2", "text", ["genetic"]),                     # a span; inspect: evidence
        ("rs1801133:G/A", "vcf[*].genotype", ["genetic"]),                # walk_vcf's variant value
        ("rs1801133:0/1", "vcf[*].genotype", []),                         # GT indexes, not alleles
        ("X:155000:<DEL>", "vcf[*].genotype", ["genetic"]),
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


_VCF_HEAD = ["##fileformat=VCFv4.2", "##reference=GRCh38",
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1"]


def _vcf(*lines: str, head: list[str] = _VCF_HEAD) -> bytes:
    return ("\n".join([*head, *lines]) + "\n").encode()


@pytest.mark.parametrize(
    ("body", "content_type", "values", "evidence"),
    [
        # one value per variant line: ID with the genotype (0/0 included), header lines are evidence
        (_vcf("chr1\t11796321\trs1801133\tG\tA\t50\tPASS\t.\tGT\t0/1",
              "chr2\t135851076\trs4988235\tG\tA\t50\tPASS\t.\tGT\t0/0",
              "chr3\t8762685\trs53576\tG\tA\t50\tPASS\t.\tGT:DP\t1|1:30"), "text/plain", 3, True),
        # no rsID: chrom:pos; no call (./.) is no value; a repeated variant is one value
        (_vcf("chr1\t100\t.\tG\tA\t50\tPASS\t.\tGT\t0/1", "chr1\t200\t.\tG\tA\t50\tPASS\t.\tGT\t./.",
              "chr1\t100\t.\tG\tA\t50\tPASS\t.\tGT\t0/1"), None, 1, True),
        # two samples: one value per variant and sample
        (_vcf("chr1\t100\trs1801133\tG\tA\t50\tPASS\t.\tGT\t0/1\t1/1",
              head=[*_VCF_HEAD[:2], _VCF_HEAD[2] + "\tS2"]), "text/plain", 2, True),
        (_vcf(), "text/plain", 0, True),                                         # a header alone
        (b"rs4477212\t1\t82154\tAA\nrs53576\t3\t8762685\tAG\n", "text/plain", 2, False),   # raw data
        (json.dumps({"samples": [{"geneSequence": SEQ}, {"geneSequence": SEQ}]}).encode(), None, 1, False),
    ],
)
def test_genetic_values_and_evidence(engine, body, content_type, values, evidence):
    inspection = engine.inspect(body, content_type)
    keys = {h.value_key for h in inspection.hits if h.field_type == "genetic"}
    assert len(keys) == values
    assert any(e.field_type == "genetic" for e in inspection.evidence) == evidence
    assert "27" in {i.subcategory for i in inspection.important}


def test_vcf_records_are_samples(engine):
    body = _vcf("chr1\t100\trs1801133\tG\tA\t50\tPASS\t.\tGT\t0/1\t1/1",
                "chr2\t100\trs4988235\tG\tA\t50\tPASS\t.\tGT\t0/0\t0/1",
                head=[*_VCF_HEAD[:2], _VCF_HEAD[2] + "\tS2"])
    hits = [h for h in engine.inspect(body, "text/plain").hits if h.field_type == "genetic"]
    assert sorted(h.record_index for h in hits) == [0, 0, 1, 1]
    assert {h.key_path for h in hits} == {"vcf[*].genotype"}
