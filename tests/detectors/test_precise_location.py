"""precise_location: lat/lon with >= 4 decimals inside China's bounding box (lat 3.8-53.6, lon 73.5-135.1),
as a "lat,lon" string (either order: the ranges do not overlap) or as sibling lat/lng keys of one JSON
object."""

from __future__ import annotations

import json

import pytest

from .helpers import types_in


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"location": "30.274084,120.155070"}, {"precise_location"}),
        ({"gps": "120.1551,30.2741"}, {"precise_location"}),                    # lon,lat
        ({"remark": "定位坐标：30.2741,120.1551"}, {"precise_location"}),        # context word
        ({"addr": {"lat": 30.274084, "lng": 120.15507}}, {"precise_location"}),  # sibling keys
        ({"wd": "39.9087", "jd": "116.3975"}, {"precise_location"}),
        ({"coordinates": [116.397477, 39.908692]}, {"precise_location"}),       # GeoJSON array
        # near misses
        ({"location": "30.27,120.15"}, set()),                                   # 2 decimals: a district
        ({"location": "40.7128,-74.0060"}, set()),                               # New York, outside China
        ({"remark": "30.2741,120.1551"}, set()),                                 # no key, no context
        ({"price": "12.3456,99.1234"}, set()),                                   # prices
        ({"lat": 30.274084}, set()),                                             # half a position
        ({"a": {"lat": 30.274084}, "b": {"lng": 120.15507}}, set()),             # different objects
    ],
)
def test_precise_location_table(engine, doc, expected):
    assert types_in(engine, json.dumps(doc).encode()) & {"precise_location"} == expected
