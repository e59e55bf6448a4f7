"""walkers.common: charset labels."""

from __future__ import annotations

import pytest

from detectors.walkers import declared_charset


@pytest.mark.parametrize(
    ("content_type", "charset"),
    [("application/json; charset=UTF-8", "utf-8"), ("text/plain;charset=\"gbk\"", "gb18030"),
     ("application/x-www-form-urlencoded; charset=gb2312", "gb18030"), ("text/plain; charset=bogus", None),
     (None, None)],
)
def test_declared_charset(content_type, charset):
    assert declared_charset(content_type) == charset
