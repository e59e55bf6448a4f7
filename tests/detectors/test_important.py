"""Important-data candidates (the Measures' appendix, configs/important_data.yaml): one table of bodies and
the sub-categories they must (and must not) make candidates, the engine's `important` field, and config
errors that name the file and the entry."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from detectors.catalog import CatalogError, ImportantData, load_important_data
from detectors.engine import FieldHit
from detectors.important import ImportantDetector, ImportantHit

from .conftest import CONFIGS

IMPORTANT_YAML = CONFIGS / "important_data.yaml"

NETCDF = b"CDF\x01\x00\x00\x00\x0a\x00\x00\x00\x0a\x00\x00\x00\x01\x00\x00\x00\x04time"
HJ212 = (b"##0285QN=20260301085857223;ST=32;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=5;"
         b"CP=&&DataTime=20260301085857;w01018-Rtd=166.7,w01018-Flag=N&&C181\r\n")
VCF = b"##fileformat=VCFv4.2\n##source=pipeline\n#CHROM\tPOS\tID\tREF\tALT\n1\t10177\trs367896724\tA\tAC\n"
HL7 = b"\x0bMSH|^~\\&|HIS|HOSP|LIS|LAB|20260301120000||ORU^R01|MSG0001|P|2.5\rPID|1||P0001\r"
DICOM = b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


def _json(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


GENETIC_RECORDS = _json({"samples": [{"sampleId": "S1", "genotype": "AG", "remark": "全基因组测序"}]})
CLINICAL_CSV_LIKE = _json({"rows": [{"诊断": "高血压", "处方": "一日一次"}]})
POLLUTION = _json({"site": {"pollutant": "NH3-N", "emission": 12.5, "note": "污染物排放 在线监测"}})
STRAY_KEYWORD = _json({"items": [{"title": "儿童基因科学实验玩具", "desc": "安全无毒，适合8岁以上"}]})
PRODUCT_WORDS = _json({"items": [{"title": "LNG 储罐模型摆件", "stereo": "stereo sound"}]})


# (body, content type, expected sub-categories, expected evidence of each)
CASES = [
    pytest.param(NETCDF, "application/x-netcdf", {"4": "signature"}, id="netcdf-header"),
    pytest.param(HJ212, "text/plain", {"6": "signature"}, id="hj212-packet"),
    pytest.param(VCF, "text/plain", {"27": "signature"}, id="vcf-header"),
    pytest.param(HL7, "text/plain", {"28": "signature"}, id="hl7-v2-message"),
    pytest.param(DICOM, "application/dicom", {"28": "signature"}, id="dicom-at-offset-128"),
    pytest.param(GENETIC_RECORDS, "application/json", {"27": "key_hints"}, id="genotype-key-with-keywords"),
    pytest.param(CLINICAL_CSV_LIKE, "application/json", {"28": "keywords"}, id="two-chinese-keys"),
    pytest.param(POLLUTION, "application/json", {"6": "key_hints"}, id="two-key-hints-and-words"),
    pytest.param(STRAY_KEYWORD, "application/json", {}, id="stray-keyword-in-product-description"),
    pytest.param(PRODUCT_WORDS, "application/json", {}, id="one-keyword-and-a-word-inside-another"),
    pytest.param(PNG, "image/png", {}, id="binary-image"),
    pytest.param(PNG + "基因测序 诊断 处方".encode(), "application/octet-stream", {},
                 id="binary-never-read-as-text"),
    # octet-stream means "type unknown": a JSON document sent so is read as JSON (the walker sniffs it).
    pytest.param(GENETIC_RECORDS, "application/octet-stream", {"27": "key_hints"}, id="octet-stream-json"),
]


@pytest.mark.parametrize(("body", "content_type", "expected"), CASES)
def test_candidates_per_body(engine, body: bytes, content_type: str, expected: dict[str, str]) -> None:
    important = engine.inspect(body, content_type).important
    assert {h.subcategory: h.evidence for h in important} == expected


def test_hits_name_config_terms_never_values(engine) -> None:
    body = _json({"samples": [{"genotype": "AGCTTAGCAT", "remark": "基因 测序 SECRET-VALUE-0001"}]})
    [hit] = engine.inspect(body, "application/json").important
    assert hit == ImportantHit("27", "key_hints", ("genotype", "基因", "测序"), "$.samples[*].genotype", 0.75)
    for field in dataclasses.fields(ImportantHit):
        text = str(getattr(hit, field.name))
        assert "SECRET" not in text and "AGCTTAGCAT" not in text


def _field_hit(field_type: str, sub: str | None, path: str, confidence: float) -> FieldHit:
    return FieldHit(field_type, path, 0, 1, "", confidence, False, True, sub)


def test_field_type_implies_its_subcategory(engine) -> None:
    # The PI recognizers decide health_medical / genetic; fed their hits, the engine adds 28 / 27 with
    # evidence "field_type" (the best confidence, the first path), unless words already made a candidate.
    hits = [_field_hit("health_medical", "28", "$.a[*].zd", 0.7),
            _field_hit("health_medical", "28", "$.b", 0.9), _field_hit("mobile_cn", None, "$.m", 0.9)]
    got = engine._important_hits(b"{}", False, [], hits)
    assert got == (ImportantHit("28", "field_type", ("health_medical",), "$.a[*].zd", 0.9),)
    got = engine._important_hits(VCF, False, [], [_field_hit("genetic", "27", "text", 0.8)])
    assert [(h.subcategory, h.evidence) for h in got] == [("27", "signature")]
    assert engine._important_hits(PNG, True, [], hits) == ()


def test_inspection_stays_positionally_compatible() -> None:
    from detectors.engine import Inspection

    assert Inspection((), ()).important == ()


def test_detectability_f_has_no_rule() -> None:
    spec = load_important_data(IMPORTANT_YAML)
    detector = ImportantDetector(spec)
    # 18 (defence) is F: its words in quantity are still no candidate: the filing decides.
    text = [("$.note", "军工 国防 军品 科研生产能力 保密资质")]
    assert [h.subcategory for h in detector.detect(b"{}", text)] == []


def test_rule_override_raises_the_bar() -> None:
    spec = load_important_data(IMPORTANT_YAML)
    assert spec.rule_for(spec.get("8")).min_distinct_terms == 3
    detector = ImportantDetector(spec)
    assert detector.detect(b"", [("text", "品位 矿床")]) == []
    assert [h.subcategory for h in detector.detect(b"", [("text", "品位 矿床 有色金属")])] == ["8"]


# --- config -----------------------------------------------------------------------------------------

def test_the_catalogue_has_13_categories_and_ids_1_to_40() -> None:
    spec = load_important_data(IMPORTANT_YAML)
    assert isinstance(spec, ImportantData) and len(spec.categories) == 13
    assert [s.id for s in spec.subcategories] == [str(i) for i in range(1, 41)]
    for sub in spec.subcategories:
        assert sub.name_zh and sub.name_en
        if sub.detectability == "H":
            assert sub.signatures, sub.id


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = IMPORTANT_YAML.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "important_data.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(("old", "new", "entry", "problem"), [
    pytest.param('      - id: "2"\n', '      - id: "1"\n', "subcategories[1] (1)", "duplicate id",
                 id="duplicate-id"),
    pytest.param('      - id: "40"\n', '      - id: "41"\n', "subcategories[1] (41)", '"1".."40"',
                 id="id-out-of-range"),
    pytest.param("regex: '\\ACDF[\\x01\\x02\\x05]'}", "regex: '\\ACDF[\\x01'}",
                 "subcategories[1] (4).signatures[2] (netcdf_classic)", "bad regex", id="bad-regex"),
    pytest.param("detectability: M\n", "detectability: X\n", "categories[0] (一).subcategories[0] (1)",
                 "detectability", id="bad-detectability"),
])
def test_config_error_names_file_and_entry(tmp_path: Path, old: str, new: str, entry: str,
                                           problem: str) -> None:
    path = _broken(tmp_path, old, new)
    with pytest.raises(CatalogError) as err:
        load_important_data(path)
    msg = str(err.value)
    assert msg.startswith(str(path)) and entry in msg and problem in msg and "\n" not in msg


def test_missing_id_is_named(tmp_path: Path) -> None:
    text = IMPORTANT_YAML.read_text(encoding="utf-8")
    start = text.index('      - id: "40"')
    path = tmp_path / "important_data.yaml"
    path.write_text(text[:start], encoding="utf-8")
    missing = r"important_data\.yaml: categories: .*missing sub-category id\(s\) 40"
    with pytest.raises(CatalogError, match=missing):
        load_important_data(path)
