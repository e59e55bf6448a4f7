"""email: own offline pattern (no tldextract), validated domain shape; Chinese text around it."""

from __future__ import annotations

import pytest

from .helpers import found


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        ("zhang.san@example.com", "$.email", [("email", "zhang.san@example.com")]),
        ("邮箱zhang_san+tag@mail.example.com.cn请回复", "text",
         [("email", "zhang_san+tag@mail.example.com.cn")]),
        ("联系：Li97@Example.NET。", "text", [("email", "Li97@Example.NET")]),
        ("a@b.co", "form.yx", [("email", "a@b.co")]),
        # near misses
        ("zhang@localhost", "text", []),                  # no dot in the domain
        ("zhang@@example.com", "text", []),
        ("@example.com", "text", []),
        ("zhang@example.c", "text", []),                  # one-letter TLD
        ("zhang@example.123", "text", []),                # numeric TLD
        ("user@-example.com", "text", []),
    ],
)
def test_email_table(engine, text, key_path, expected):
    assert [(t, v) for t, v in found(engine, text, key_path) if t == "email"] == expected


def test_when_checksum_is_wrong_then_no_result(engine):
    # Email has no check digit; the closest thing is the domain shape: a bad one gives nothing.
    assert found(engine, "zhang..san@example..com", "$.email") == []


def test_faker_emails(engine, fake):
    for _ in range(20):
        value = fake.email()
        assert found(engine, f"邮箱{value}", "text") == [("email", value)]
