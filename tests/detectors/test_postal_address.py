"""postal_address: key hints plus administrative-division structure; free text with enough structure."""

from __future__ import annotations

import pytest

from detectors.validators import prepare_params, validate_postal_address

from .helpers import found

ADDR = "浙江省杭州市西湖区文三路90号东部软件园1号楼3单元502室"


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        (ADDR, "$.receiver.address", [("postal_address", ADDR)]),
        ("杭州市西湖区文三路90号", "$.shdz", [("postal_address", "杭州市西湖区文三路90号")]),
        ("上海市浦东新区世纪大道100号", "form.jtdz", [("postal_address", "上海市浦东新区世纪大道100号")]),
        (f"请寄到{ADDR}，谢谢", "text", [("postal_address", ADDR)]),
        ("收货地址：广东省深圳市南山区科技园路8号3栋201", "text",
         [("postal_address", "广东省深圳市南山区科技园路8号3栋")]),
        # near misses
        ("杭州", "$.address", []),                              # a city is not an address
        ("浙江省", "$.address", []),
        ("我在杭州市工作", "text", []),                            # not enough structure
        ("浙江省杭州市", "text", []),
        (ADDR, "$.shop.address", []),                            # a shop's address is not personal
        ("https://example.com/a/b", "$.address", []),
    ],
)
def test_postal_address_table(engine, text, key_path, expected):
    assert [(t, v) for t, v in found(engine, text, key_path) if t == "postal_address"] == expected


def test_when_checksum_is_wrong_then_no_result(engine):
    # No check digit: too little structure under an address key gives nothing.
    assert found(engine, "西湖边上", "$.address") == []


def test_faker_addresses(engine, fake):
    for _ in range(30):
        value = fake.address()
        assert found(engine, value, "$.address") == [("postal_address", value)]


@pytest.fixture(scope="module")
def address_params(catalog):
    return prepare_params(next(ft.params for ft in catalog.field_types if ft.id == "postal_address"))


@pytest.mark.parametrize(("text", "keyed", "valid"), [
    (ADDR, True, True),
    (ADDR, False, True),
    ("杭州市区", True, True),                         # four Han characters, two structure words
    ("杭市区", True, False),                          # three Han characters are too few
    ("文三路边上", True, False),                       # one structure word
    ("上海市文三路", True, True),                      # two under a key
    ("上海市文三路", False, False),                    # but three in free text
    ("杭州市文三路9号", False, True),
    ("上海市世纪大\n道", True, True),                   # a line break inside a word (大道) is no break
], ids=["full", "full-free", "four-han", "three-han", "one-word", "two-keyed", "two-free", "three-free",
        "wrapped-word"])
def test_postal_address_validator(address_params, text: str, keyed: bool, valid: bool) -> None:
    assert validate_postal_address(text, address_params, keyed) is valid


WORDS = ["市", "区", "路", "号"]


@pytest.mark.parametrize(("text", "params", "keyed", "valid"), [
    (ADDR, {}, True, False),                                        # no structure words configured
    ("杭州市西湖区", {"structure_words": WORDS}, True, True),         # default: two under a key ...
    ("杭州市西湖区", {"structure_words": WORDS}, False, False),       # ... three in free text
    ("杭州市西湖区文三路", {"structure_words": WORDS}, False, True),
    ("杭州市西湖区", {"structure_words": WORDS, "min_structure_keyed": 3}, True, False),
    ("杭州市西湖区", {"structure_words": WORDS, "min_structure_free": 2}, False, True),
    ("杭州市西湖区文三路", {"structure_words": WORDS, "min_structure_keyed": 4,
                        "min_structure_free": 1}, True, False),       # keyed reads only its own minimum
], ids=["no-words", "default-keyed", "default-free", "default-free-three", "keyed-minimum", "free-minimum",
        "keyed-not-free"])
def test_postal_address_params(text: str, params: dict, keyed: bool, valid: bool) -> None:
    assert validate_postal_address(text, prepare_params(params), keyed) is valid
