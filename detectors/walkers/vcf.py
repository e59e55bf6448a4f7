"""VCF (Variant Call Format 4.x) bodies into triples: one value per variant and sample.

A VCF data line is one variant (CHROM POS ID REF ALT QUAL FILTER INFO FORMAT sample…). What a person's
genome says is the variant *with its genotype*: the walker emits `rs1801133:G/A` (the ID, or
`chrom:pos` when the ID is `.`, then the GT indexes resolved to alleles, `|` kept for phased calls) at
`vcf[*].genotype`, one record per sample column (a sample is one person). Calls without a genotype
(`./.`) are no value. Meta lines (`##…`) and the column header are emitted at `vcf.header` in an extra
record numbered after the samples: the format signature is evidence, not a value. Sample names never
become key paths (they are pseudonymous codes, sometimes names).
"""

from __future__ import annotations

import re

from detectors.walkers.common import Body, Sink, Walker

_GT_SPLIT = re.compile(r"([/|])")
_FIXED = 9   # CHROM POS ID REF ALT QUAL FILTER INFO FORMAT


def looks_like_vcf(text: str) -> bool:
    return text.lstrip("\ufeff \t\r\n").startswith("##fileformat=VCF")


def genotype(ref: str, alts: list[str], gt: str) -> str | None:
    """`0/1` with REF G, ALT A -> `G/A`; None when no allele was called or an index is out of range."""
    alleles = [ref, *alts]
    out = []
    for part in _GT_SPLIT.split(gt):
        if part in ("/", "|"):
            out.append(part)
        elif part.isdigit() and int(part) < len(alleles):
            out.append(alleles[int(part)])
        else:
            return None
    return "".join(out) or None


def walk_vcf(text: str, sink: Sink) -> None:
    header: list[str] = []
    samples = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            header.append(line)
            if line.startswith("#CHROM"):
                samples = max(0, len(line.split("\t")) - _FIXED)
            continue
        cols = line.split("\t")
        if len(cols) <= _FIXED:
            continue
        chrom, pos, vid, ref, alt, fmt = cols[0], cols[1], cols[2], cols[3], cols[4], cols[8]
        keys = fmt.split(":")
        if "GT" not in keys:
            continue
        gt_at = keys.index("GT")
        ident = vid.split(";", 1)[0] if vid not in ("", ".") else f"{chrom.removeprefix('chr')}:{pos}"
        for s, call in enumerate(cols[_FIXED:]):
            fields = call.split(":")
            called = genotype(ref, alt.split(","), fields[gt_at]) if gt_at < len(fields) else None
            if called is not None and not sink.emit("vcf[*].genotype", f"{ident}:{called}", s):
                return
        samples = max(samples, len(cols) - _FIXED)
    for line in header:
        if not sink.emit("vcf.header", line, samples):
            return


def _walk(body: Body, sink: Sink) -> str | None:
    # A line format with its own signature (`##fileformat=VCF`), typed or sent as text/plain; read line by
    # line as text it would lose which sample column a genotype sits in. Declared JSON or XML is not VCF.
    if "json" in body.ct or "xml" in body.ct or not looks_like_vcf(body.stripped):
        return None
    walk_vcf(body.stripped, sink)
    return "vcf"


WALKER = Walker("vcf", _walk)
