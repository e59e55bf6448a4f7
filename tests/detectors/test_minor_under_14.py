"""minor_under_14: derived from a resident ID (GB 11643 birth date) or a date of birth giving an age under 14
at the flow's date (`Engine.inspect(..., at=)`), on the same record with the same keyed-hash scheme."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from detectors.subjects import value_key

from .conftest import SUBJECT_KEY
from .helpers import rid

AT = dt.date(2026, 3, 3)
CHILD_ID = rid("33010620150304123")          # 13 the day before their 14th birthday
TEEN_ID = rid("33010620120303123")           # 14 on the day
CHILD_DOB = "2020-06-01"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"students": [{"name": "张小明", "sfzh": CHILD_ID}]}, {"minor_under_14"}),
        ({"birthday": CHILD_DOB}, {"minor_under_14"}),
        ({"csrq": "2013年03月04日"}, {"minor_under_14"}),                   # 13 until tomorrow
        # near misses
        ({"sfzh": TEEN_ID}, set()),                                           # 14 today: not under 14
        ({"birthday": "1990-01-01"}, set()),
        ({"createTime": CHILD_DOB}, set()),                                   # a date, not a birth date
        ({"sfzh": CHILD_ID[:-1] + ("0" if CHILD_ID[-1] != "0" else "1")}, set()),  # wrong check digit
        ({"birthday": "2027-01-01"}, set()),                                  # born after the flow
    ],
)
def test_minor_under_14_table(engine, doc, expected):
    hits = engine.inspect(json.dumps(doc, ensure_ascii=False).encode(), "application/json", at=AT).hits
    assert {h.field_type for h in hits} & {"minor_under_14"} == expected


def test_minor_hit_shares_record_and_hashes_the_birth_value(engine):
    body = json.dumps([{"sfzh": TEEN_ID}, {"sfzh": CHILD_ID}]).encode()
    hits = engine.inspect(body, "application/json", at=AT).hits
    minor = [h for h in hits if h.field_type == "minor_under_14"]
    assert len(minor) == 1 and minor[0].record_index == 1 and minor[0].sensitive
    assert minor[0].value_key == value_key(SUBJECT_KEY, "minor_under_14", CHILD_ID)
    assert CHILD_ID not in minor[0].masked


def test_default_date_is_today(engine):
    # Without `at`, a child born last year is a minor today; the old two-argument call keeps working.
    last_year = dt.date.today().replace(day=1) - dt.timedelta(days=365)
    hits = engine.inspect(json.dumps({"dob": last_year.isoformat()}).encode(), "application/json").hits
    assert "minor_under_14" in {h.field_type for h in hits}
