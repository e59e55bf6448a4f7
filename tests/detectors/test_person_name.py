"""person_name: under name keys (Han names by surname dictionary, Latin names), or after a label in text."""

from __future__ import annotations

import json

import pytest

from detectors.validators import prepare_params, validate_person_name

from .helpers import found


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        ("张三", "$.receiver.name", [("person_name", "张三")]),
        ("王小明", "$.xm", [("person_name", "王小明")]),
        ("欧阳娜娜", "form.xingming", [("person_name", "欧阳娜娜")]),                    # compound surname
        ("司马相如", "$.姓名", [("person_name", "司马相如")]),
        ("买买提·艾力", "$.realName", [("person_name", "买买提·艾力")]),                 # minority name
        ("Zhang San", "$.consignee", [("person_name", "Zhang San")]),
        ("John Smith", "$.contactName", [("person_name", "John Smith")]),
        ("收件人：李四，手机13800138000", "text", [("person_name", "李四")]),
        ("姓名张伟手机号138", "text", [("person_name", "张伟")]),
        # near misses
        ("张三", "$.remark", []),                          # no key, no label
        ("iPhone 15", "$.name", []),                        # not a name shape
        ("Apple Watch", "$.items[*].name", []),             # product list
        ("苹果手机", "$.name", []),                          # 苹 is not a surname
        ("张家港市", "$.name", []),                          # a place
        ("华为技术有限公司", "$.name", []),
        ("王", "$.name", []),
        ("test user", "$.name", []),
        ("欧阳", "$.name", []),                             # compound surname alone
    ],
)
def test_person_name_table(engine, text, key_path, expected):
    assert [(t, v) for t, v in found(engine, text, key_path) if t == "person_name"] == expected


@pytest.mark.parametrize(
    ("doc", "names", "records"),
    [
        # FHIR HumanName: family + given joined into one value at the name object's own path
        ({"resourceType": "Patient", "name": [{"family": "张", "given": ["三"]}], "birthDate": "1985-04-12"},
         {"张三"}, {0}),
        ({"name": [{"use": "official", "family": "欧阳", "given": ["娜", "娜"]}]}, {"欧阳娜娜"}, {0}),
        ({"name": {"family": "Smith", "given": ["John"]}}, {"John Smith"}, {0}),
        ({"name": [{"family": "张", "given": ["三"], "text": "张三"}]}, {"张三"}, {0}),   # same value twice
        # one Patient per Bundle entry: one record each, name and birth date together
        ({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "Patient", "name": [{"family": "李", "given": ["四"]}],
                          "birthDate": "1990-01-02"}},
            {"resource": {"resourceType": "Patient", "name": [{"family": "王", "given": ["五"]}],
                          "birthDate": "1991-03-04"}}]}, {"李四", "王五"}, {0, 1}),
        # near misses: no family/given strings, a product's family
        ({"name": [{"family": 3, "given": ["三"]}]}, set(), set()),
        ({"items": [{"name": {"family": "张", "given": ["三"]}}]}, set(), set()),
    ],
)
def test_fhir_human_names(engine, doc, names, records):
    from detectors.walkers import walk

    body = json.dumps(doc, ensure_ascii=False).encode()
    hits = [h for h in engine.inspect(body, "application/fhir+json").hits if h.field_type == "person_name"]
    walked = {v for p, v, _ in walk(body, "application/json").triples if p.endswith("name[*]")
              or p.endswith(".name")}
    assert {v for v in walked if v in names} == names
    assert len({h.value_key for h in hits}) == len(names)
    assert {h.record_index for h in hits} == records
    if records and "birthDate" in json.dumps(doc):
        births = {h.record_index for h in engine.inspect(body, None).hits if h.field_type == "date_of_birth"}
        assert births == records


@pytest.mark.parametrize(
    ("body", "names", "births"),
    [
        # HL7 v2 PID-5 (family^given) and PID-7: one record per PID
        (b"MSH|^~\\&|HIS\rPID|1||||\xe5\xbc\xa0^\xe4\xb8\x89||19850412|M\r"
         b"MSH|^~\\&|HIS\rPID|1||||Smith^John||19700101\r", 2, {0, 1}),
        (b"MSH|^~\\&|HIS\rNK1|1|\xe6\x9d\x8e^\xe5\x9b\x9b|SPO\r", 1, set()),      # next of kin
    ],
)
def test_hl7_names_and_birth_dates(engine, body, names, births):
    hits = engine.inspect(body, "application/hl7-v2").hits
    assert len({h.value_key for h in hits if h.field_type == "person_name"}) == names
    assert {h.record_index for h in hits if h.field_type == "date_of_birth"} == births


@pytest.mark.parametrize("key", ["donorName", "memberName", "insuredName"])
def test_more_name_keys(engine, key):
    assert found(engine, "张三", f"$.samples[*].{key}") == [("person_name", "张三")]


def test_when_checksum_is_wrong_then_no_result(engine):
    # Names have no check digit; the surname dictionary plays that role.
    assert found(engine, "甲乙", "$.name") == []


def test_faker_names(engine, fake):
    for _ in range(50):
        value = fake.name()
        assert found(engine, value, "$.receiverName") == [("person_name", value)]


@pytest.fixture(scope="module")
def name_params(catalog):
    return prepare_params(next(ft.params for ft in catalog.field_types if ft.id == "person_name"))


@pytest.mark.parametrize(("text", "keyed", "valid"), [
    ("张三", True, True),
    ("张三", False, True),                                  # a Han name needs no key: its surname vouches
    ("王小明", True, True),
    ("王小明明", True, False),                               # single surname: at most 3 characters
    ("欧阳娜", True, True),                                   # compound surname: 3 or 4 characters
    ("欧阳娜娜", True, True),
    ("欧阳娜娜娜", True, False),
    ("买买提·艾力", True, True),
    ("买买提·艾力", False, False),                            # a minority name needs its key
    ("John·Smith", True, False),                             # every part Han
    ("买" * 9 + "·" + "艾" * 10, True, True),                 # 20 characters with the separator
    ("买" * 10 + "·" + "艾" * 10, True, False),               # 21
    ("John Smith", True, True),
    ("John Smith", False, False),                            # a Latin name needs its key
    ("Xavier Xu", True, True),                               # X is a letter, not a separator
    ("A" * 30 + " " + "B" * 29, True, True),                  # 60 characters
    ("A" * 30 + " " + "B" * 30, True, False),                 # 61
    ("Test Smith", True, False),                              # a reject word
    ("张三公司", True, False),                                 # a reject suffix
], ids=lambda v: v if isinstance(v, str) and len(v) < 16 else None)
def test_person_name_validator(name_params, text: str, keyed: bool, valid: bool) -> None:
    assert validate_person_name(text, name_params, keyed) is valid


@pytest.mark.parametrize(("text", "params", "valid"), [
    ("John Smith", {}, True),                                # no dictionaries configured: Latin names only
    ("张三", {}, False),
    ("张三", {"surnames": "张"}, True),
    ("Mickey Mouse", {"reject_words": ["Mickey Mouse"]}, False),   # a two-word reject entry, any case
    ("Mickey Mouse", {"reject_words": ["mickey"]}, False),
    ("张三丰", {"reject_suffixes": ["丰"], "surnames": "张"}, False),
    ("诸葛亮", {"compound_surnames": ["诸葛"]}, True),
], ids=["no-params-latin", "no-params-han", "surnames", "reject-phrase", "reject-word", "reject-suffix",
        "compound"])
def test_person_name_params(text: str, params: dict, valid: bool) -> None:
    assert validate_person_name(text, prepare_params(params), True) is valid
