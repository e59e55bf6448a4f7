"""Masked samples: the documented shapes, and never the raw value."""

from __future__ import annotations

import pytest

from detectors.masking import MASKERS, mask


@pytest.mark.parametrize(
    ("masker", "raw", "masked"),
    [
        ("resident_id", "33010619900101123x", "330***********123X"),
        ("mobile", "13800000000", "138****0000"),
        ("mobile", "+86 138-0000-0000", "138****0000"),
        ("email", "zhang.san@Example.com", "z***@example.com"),
        ("bank_card", "6222020200112233445", "622202*********3445"),
        ("bank_card", "6222 0202 0011 2233", "622202******2233"),
        ("person_name", "张三", "张*"),
        ("person_name", "王小明", "王**"),
        ("person_name", "Zhang San", "Z***"),
        ("postal_address", "浙江省杭州市西湖区文三路90号", "浙江省***"),
        ("postal_address", "上海市浦东新区世纪大道100号", "上海市***"),
        ("postal_address", "西湖区文三路90号", "西湖***"),
        ("generic", "abcdefgh", "a******h"),
        ("generic", "ab", "**"),
    ],
)
def test_mask_table(masker, raw, masked):
    assert mask(masker, raw) == masked


@pytest.mark.parametrize("masker", sorted(MASKERS))
def test_mask_never_returns_the_raw_value(masker, fake):
    samples = [fake.ssn(), fake.phone_number(), fake.email(), fake.credit_card_number(), fake.name(),
               fake.address(), "a", "ab", "abc", "张"]
    for raw in samples:
        out = mask(masker, raw)
        assert out != raw and (len(raw) < 2 or raw not in out)


@pytest.mark.parametrize(("address", "masked"), [
    ("浙江省杭州市西湖区文三路90号", "浙江省***"),
    ("黄石市黄石港区湖滨大道1号", "黄石市***"),
    ("西湖区文三路90号", "西湖***"),
    # Whatever stands before the division is not kept when it is not a place (a recipient's name).
    ("张三收浙江省杭州市西湖区文三路90号", "***"),
    ("王小明浙江杭州西湖区", "***"),
])
def test_an_address_keeps_only_a_real_division(address: str, masked: str) -> None:
    from detectors.masking import mask_postal_address

    assert mask_postal_address(address) == masked
