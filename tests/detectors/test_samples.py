"""Masked samples on ingest (DESIGN §3 `detections.masked_samples`: never a raw value; detectors/samples.py).

The collector runs `safe_sample` over every uploaded sample: what the agent's own masking produces is kept,
anything else (a raw value a hostile or old agent uploaded) becomes a placeholder that says nothing.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.catalog import Catalog
from detectors.engine import Engine
from detectors.keypath import _DIGIT_RUN
from detectors.masking import MASKERS, mask
from detectors.samples import PLACEHOLDER, _config_terms, is_masked, safe_sample

from .conftest import CONFIGS
from .helpers import card, rid

ROOT = Path(__file__).resolve().parents[2]

# -- what a hostile agent uploaded (review finding) and its relatives --------------------------------------


@pytest.mark.parametrize("sample", [
    # found by the review: stored verbatim and shown in reports
    "110105194912310021", "张三 13812345678",
    # raw values of every kind: nothing masked
    "13812345678", "138-1234-5678", "+86 138 1234 5678", "6222020200112233445", "6222 0212 3456 7890",
    "zhang.san@example.com", "张三", "王小明", "欧阳娜娜", "买买提·艾力", "John Smith",
    "浙江省杭州市西湖区文三路90号",
    "0571-88886666", "1990-01-01", "E12345678", "浙A12345", "192.168.10.20", "P@ssw0rd!",
    "１３８１２３４５６７８",
    # a mask character somewhere, but a value left in the clear
    "13812345678***", "***13812345678", "138****5678 张三", "张三 138****5678", "张*13812345678",
    "1381234****", "330106199001011***", "110105********0021X", "6222020200********", "138123***5678",
    "1381234******5678",
    # a name left unmasked where the maskers keep characters
    "张三***", "李四***", "王小明***", "张三市***", "王小明市***", "浙江张三市***", "张三收浙江省***",
    "浙江省杭州市***",
    # an e-mail with its local part unmasked, or a value in the domain
    "zhang***@example.com", "zhang.san@example.com***", "z***@13812345678.com",
    "z***@example.com 13812345678",
    "z***@张三.com",
    # sizes and counts that are values
    "<data:13812345678 chars>", "<vector[110105194912310021]:9 chars>", "<13812345678 values>",
    # markup, and the placeholder shape with a value
    "<script>alert(1)</script>", "<masked:13812345678>",
])
def test_when_a_sample_is_not_what_masking_makes_then_it_is_replaced(sample: str) -> None:
    assert safe_sample(sample) == PLACEHOLDER
    assert not is_masked(sample)


@pytest.mark.parametrize("sample", [
    "", "*", "**", "******",
    "张*", "王**", "欧***", "买*****", "Z***", "P***", "E***",
    "1********8", "E*******8", "浙*****5", "0***********6",
    "330***********123X", "110********1002", "138****5678", "１３８＊＊＊＊５６７８", "44*****78",
    "622202*********3445", "622848******2233",
    "z***@example.com", "1***@qq.com", "l***@mail.tsinghua.edu.cn",
    "浙江省***", "上海市***", "香港特别行政区***", "内蒙古自治区***", "广西壮族自治区***",
    "新疆维吾尔自治区***",
    "黄石市***", "中国浙江省***", "黑龙江哈尔滨市***", "西湖***", "浦东***", "10***",
    "<jpeg:52344 chars>", "<png:1048576 chars>", "<vector[512]:4096 chars>", "<data:240 chars>",
    "30***,120***", "3.***,73.***", "<3 values>",
    "hl7_v2", "genotype", "fhir_resource", "icd10_code", "hj212",
])
def test_when_a_sample_is_what_masking_makes_then_it_is_kept(sample: str) -> None:
    assert safe_sample(sample) == sample


def test_the_placeholder_is_fixed_and_says_nothing() -> None:
    assert PLACEHOLDER == "<masked>"
    assert safe_sample(PLACEHOLDER) == PLACEHOLDER
    assert safe_sample("13812345678") == safe_sample("110105194912310021") == PLACEHOLDER


# -- every sample the agent's masking makes is kept ----------------------------------------------------------

# Realistic values of every catalog field type (synthetic). Each is masked with its type's masker from
# configs/field_types.yaml, as the engine does; the masked sample must survive the collector.
REALISTIC: dict[str, tuple[str, ...]] = {
    "person_name": ("张三", "王小明", "欧阳娜娜", "司马相如", "买买提·艾力", "阿依古丽·买买提", "Zhang San",
                    "John Smith", "李 四", "诸葛亮"),
    "resident_id_cn": (rid("11010519491231002"), rid("33010619900101123"), rid("44030520150301456").lower(),
                       "110105491231002", "1101 0519 4912 3100 21", "110105-19491231-0021",
                       "１１０１０５１９４９１２３１００２１"),
    "passport_no": ("E12345678", "G12345678", "EA1234567", "P1234567"),
    "travel_permit": ("C12345678", "H1234567801", "81000019900101123X"),
    "mobile_cn": ("13812345678", "+86 138-1234-5678", "008613812345678", "138 1234 5678", "8613812345678",
                  "+8613812345678", "85291234567", "91234567", "1381234"),
    "landline_cn": ("0571-88886666", "(010)62345678", "02188886666", "0755-2345678-123"),
    "email": ("zhang.san@example.com", "12345678@qq.com", "ZHANG@163.COM", "li_si2024@foxmail.com", "a@b.cn",
              "wang@mail.tsinghua.edu.cn", "x-y+z@sub.example.org"),
    "postal_address": ("浙江省杭州市西湖区文三路90号", "上海市浦东新区世纪大道100号", "西湖区文三路90号",
                       "香港特别行政区中环皇后大道中99号", "内蒙古自治区呼和浩特市新城区新华大街1号",
                       "广西壮族自治区南宁市青秀区民族大道100号", "杭州市西湖区文三路90号",
                       "黄石市黄石港区湖滨大道1号", "浦东新区世纪大道100号", "朝阳区建国路88号",
                       "中国浙江省杭州市西湖区", "宁夏回族自治区银川市兴庆区解放街1号",
                       "新疆维吾尔自治区乌鲁木齐市天山区", "湖州南浔区人民路1号", "黑龙江哈尔滨市南岗区",
                       "台湾省台北市信义区", "澳门特别行政区新马路1号", "北京朝阳区建国路88号",
                       "张家口市桥东区胜利北路1号", "马鞍山市花山区湖东路1号"),
    "date_of_birth": ("1990-01-01", "1990年1月1日", "19900101", "1990/01/01", "2015-03-01"),
    "demographic": ("男", "汉族", "中国", "中共党员", "浙江杭州", "维吾尔族"),
    "bank_card": (card("622202", 19), card("622848", 16), card("436742", 16), card("512345", 16),
                  "6222 0212 3456 7890", card("356899", 16), card("601382", 19), card("955880", 19),
                  card("2221", 16)),
    "bank_account": ("6230580000123456789", "1202020209000123456", "A123456789", "zhangsan@alipay"),
    "auth_secret": ("P@ssw0rd!", "123456", "abc"),
    "transaction_record": ("2024-01-01 支付宝 消费 128.00元", "月收入15000元"),
    "health_medical": ("2型糖尿病", "E11.9", "高血压三级", "乙肝病毒携带者"),
    "genetic": ("ACGTACGTTAGC", "rs1801133:G/A", "ATCG" * 60),
    "face_biometric": ("data:image/jpeg;base64,/9j/4AAQSkZJRgABAQAAAQABAAD", "iVBORw0KGgoAAAANSUhEUgAAAAE",
                       json.dumps([round(0.001 * i - 0.05, 3) for i in range(128)])),
    "other_biometric": ("Rk1SACAyMAAAAAFiAAABAAGQAMUAxQEAAAAo", "0.12,0.34,0.56"),
    "religion": ("佛教", "基督教", "伊斯兰教"),
    "criminal_record": ("2019年因盗窃罪被判处有期徒刑一年", "行政拘留十日"),
    "precise_location": ("30.274084,120.155070", "北纬30.27 东经120.15"),
    "location_track": ("[[120.155070,30.274084],[120.156,30.275]]",),
    "vehicle_plate": ("浙A12345", "京AD12345", "粤B·12345"),
    "vin": ("LSVAU2180N2183294", "LFV2A21K6E4123456"),
    "device_id": ("860123456789012", "AA:BB:CC:DD:EE:FF", "550e8400-e29b-41d4-a716-446655440000",
                  "89860012345678901234", "460001234567890"),
    "ip_address": ("192.168.10.20", "2408:8207:1234::1", "8.8.8.8"),
    "online_account": ("wxid_abc123456", "12345678", "zhangsan_2024"),
    "communications": ("张三 13812345678; 李四 13912345678",),
    "minor_under_14": ("2015-03-01", rid("44030520150301456")),
    "org_credit_code": ("91330106MA2B0AB12X", "12100000400000624D"),
    "important_data": ("机密", "GDSII"),
}


def _maskers() -> dict[str, str]:
    from detectors.catalog import load_catalog

    return {ft.id: ft.masker for ft in load_catalog(CONFIGS / "field_types.yaml").field_types}


_TABLE = [(ft, masker, value) for ft, masker in sorted(_maskers().items()) for value in REALISTIC.get(ft, ())]


def test_the_table_covers_every_catalog_field_type_and_every_masker(catalog: Catalog) -> None:
    assert {ft.id for ft in catalog.field_types} <= set(REALISTIC)
    assert {masker for _, masker, _ in _TABLE} == set(MASKERS)


@pytest.mark.parametrize(("field_type", "masker", "value"), _TABLE,
                         ids=[f"{ft}-{i}" for i, (ft, _, _) in enumerate(_TABLE)])
def test_every_sample_the_agent_masks_is_kept(field_type: str, masker: str, value: str) -> None:
    sample = mask(masker, value)
    assert safe_sample(sample) == sample, (field_type, sample)
    # ... and the raw value itself would not have been
    assert safe_sample(value) == PLACEHOLDER or field_type == "important_data"


def test_every_sample_the_engine_makes_on_the_bench_corpus_is_kept(engine: Engine, catalog: Catalog) -> None:
    """Real agent output: 400 bodies of the accuracy benchmark (JSON, forms in UTF-8 and GBK, CSV, free
    text), every masked hit sample and every important-data term; and every planted value, raw and masked."""
    from bench.corpus import generate

    maskers = {ft.id: ft.masker for ft in catalog.field_types}
    lost: list[tuple[str, str]] = []
    leaked: list[str] = []
    seen = 0
    for body in generate(400, seed=11):
        for label in body.labels:
            sample = mask(maskers[label.field_type], label.value)
            if safe_sample(sample) != sample:
                lost.append((label.field_type, sample))
            if safe_sample(label.value) != PLACEHOLDER:
                leaked.append(label.field_type)
        inspection = engine.inspect(body.data, body.content_type)
        samples = [(h.field_type, h.masked) for h in inspection.hits if h.masked]
        samples += [(f"important_{i.subcategory}", t) for i in inspection.important for t in i.terms]
        seen += len(samples)
        lost += [(t, s) for t, s in samples if safe_sample(s) != s]
    assert seen > 1000
    assert not lost, lost[:20]
    assert not leaked, leaked[:20]


def test_derived_samples_the_engine_makes_are_kept(engine: Engine) -> None:
    """Positions, containers, codes, vectors, secrets and the important-data terms of one record."""
    body = {"resourceType": "Patient",
            "trackPoints": [{"lat": "30.274084", "lng": "120.155070"},
                            {"lat": "30.275123", "lng": "120.156456"}],
            "contacts": [{"name": "张三", "mobile": "13812345678"},
                         {"name": "李四", "mobile": "13912345678"}],
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"}]},
            "faceFeature": [round(0.001 * i, 3) for i in range(128)], "password": "P@ssw0rd!",
            "ip": "192.168.10.20", "plate": "浙A12345", "birthDate": "2015-03-01", "religion": "佛教",
            "address": "黄石市黄石港区湖滨大道1号", "homeAddress": "西湖区文三路90号"}
    inspection = engine.inspect(json.dumps(body, ensure_ascii=False).encode(), "application/json")
    samples = {h.masked for h in inspection.hits if h.masked}
    samples |= {t for i in inspection.important for t in i.terms}
    assert {"30***,120***", "<2 values>", "E***", "<vector[128]:752 chars>", "******", "黄石市***",
            "西湖***", "fhir_resource"} <= samples
    assert {s for s in samples if safe_sample(s) != s} == set()


def test_every_sample_in_the_golden_outputs_is_kept() -> None:
    samples = set()
    for path in sorted((ROOT / "fixtures" / "expected").glob("*.json")):
        for row in json.loads(path.read_text(encoding="utf-8")).get("detections", []):
            samples.update(row.get("masked_samples") or [])
    assert len(samples) > 100
    assert {s for s in samples if safe_sample(s) != s} == set()


# -- properties ------------------------------------------------------------------------------------------

_PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(st.sampled_from(["generic", "mobile", "person_name", "secret", "blob"]), st.text(max_size=80))
def test_the_maskers_that_take_anything_are_kept_on_anything(masker: str, value: str) -> None:
    sample = mask(masker, value)
    assert safe_sample(sample) == sample


_RID = st.builds(lambda area, born, seq: rid(f"{area}{born}{seq}"),
                 st.sampled_from(["110105", "330106", "440305", "510104", "650102", "810000"]),
                 st.dates().map(lambda d: f"{d.year % 10000:04d}{d.month:02d}{d.day:02d}"),
                 st.from_regex(r"\d{3}", fullmatch=True))
_CARD = st.builds(lambda prefix, n: card(prefix, n),
                  st.sampled_from(["62", "60", "4", "51", "55", "22", "27", "35", "34", "37", "9", "622848"]),
                  st.integers(16, 19))
# The catalog's email pattern (configs/field_types.yaml): labels start and end with a letter or digit.
# A domain with five digits joined by dots (0.0.000.aa) is replaced by design: digits with separators.
_EMAIL = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,20}@"
                       r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,10}[A-Za-z0-9])?\.){1,3}[A-Za-z]{2,6}",
                       fullmatch=True).filter(lambda e: not _DIGIT_RUN.search(e.rpartition("@")[2]))
_ADDRESS = st.builds(lambda head, division, rest: head + division + rest,
                     st.sampled_from(["浙江", "广东", "北京", "杭州", "黄石", "乌鲁木齐", "内蒙古", "香港",
                                      "马鞍山"]),
                     st.sampled_from(["省", "市", "自治区", "特别行政区"]),
                     st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), min_size=2,
                             max_size=20))


@_PROPERTY
@given(st.one_of(_RID.map(lambda v: ("resident_id", v)), _CARD.map(lambda v: ("bank_card", v)),
                 _EMAIL.map(lambda v: ("email", v)), _ADDRESS.map(lambda v: ("postal_address", v))))
def test_the_maskers_of_shaped_values_are_kept_on_such_values(case: tuple[str, str]) -> None:
    masker, value = case
    sample = mask(masker, value)
    assert safe_sample(sample) == sample


_SIZE = re.compile(r"<[a-z]+(?:\[\d+\])?:\d+ chars>|<\d+ values>")


@_PROPERTY
@given(st.text(max_size=60))
def test_text_without_a_mask_character_is_never_kept(text: str) -> None:
    """Only the stars-free shapes the agent makes (sizes, counts, configured terms) pass without a star."""
    if "*" in unicodedata.normalize("NFKC", text):
        return
    if safe_sample(text) == text != PLACEHOLDER:
        assert text == "" or text in _config_terms() or _SIZE.fullmatch(unicodedata.normalize("NFKC", text))


@_PROPERTY
@given(st.text(max_size=60))
def test_safe_sample_keeps_the_whole_sample_or_replaces_it(text: str) -> None:
    out = safe_sample(text)
    assert out in (text, PLACEHOLDER)
    assert safe_sample(out) == out
