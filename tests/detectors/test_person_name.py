"""person_name: under name keys (Han names by surname dictionary, Latin names), or after a label in text."""

from __future__ import annotations

import pytest

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


def test_when_checksum_is_wrong_then_no_result(engine):
    # Names have no check digit; the surname dictionary plays that role.
    assert found(engine, "甲乙", "$.name") == []


def test_faker_names(engine, fake):
    for _ in range(50):
        value = fake.name()
        assert found(engine, value, "$.receiverName") == [("person_name", value)]
