"""walkers.vcf: VCF data lines into resolved genotypes, one record per sample column."""

from __future__ import annotations

from detectors.walkers import walk


def test_vcf_walk_resolves_genotypes_and_keeps_sample_names_out_of_paths():
    body = (b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tZhangSan\n"
            b"chr1\t100\trs1801133\tG\tA,T\t50\tPASS\t.\tDP:GT\t30:1|2\n"
            b"chrX\t200\t.\tC\tT\t50\tPASS\t.\tGT\t./.\n")
    walked = walk(body, "text/plain")
    assert walked.triples[0] == ("vcf[*].genotype", "rs1801133:A|T", 0)
    assert [t for t in walked.triples if t[0] != "vcf.header"] == [walked.triples[0]]
    assert all("ZhangSan" not in path for path, _, _ in walked.triples)
    assert {r for p, _, r in walked.triples if p == "vcf.header"} == {1}
