"""postal_address: key hints plus administrative-division structure; free text with enough structure."""

from __future__ import annotations

import pytest

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
