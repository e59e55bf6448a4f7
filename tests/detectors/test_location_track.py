"""location_track: several positions of one subject (under a track key, as records or as one string) and
NMEA 0183 $GPRMC/$GNGGA sentences with a valid checksum."""

from __future__ import annotations

import json
from functools import reduce

import pytest

from .helpers import types_in


def _nmea(body: str) -> str:
    return f"${body}*{reduce(lambda a, c: a ^ ord(c), body, 0):02X}"


RMC = _nmea("GPRMC,092750.000,A,3016.4460,N,12009.3000,E,0.02,31.66,280511,,,A")
GGA = _nmea("GNGGA,092750.000,3016.4460,N,12009.3000,E,1,8,1.03,61.7,M,55.2,M,,")
POINTS = [{"lat": 30.2741 + i / 1000, "lng": 120.1551 + i / 1000, "ts": f"2026-03-03T09:0{i}:00+08:00"}
          for i in range(3)]


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (json.dumps({"userId": "u1", "trackPoints": POINTS}), "application/json", {"location_track"}),
        (json.dumps({"route": "120.1551,30.2741;120.1561,30.2751;120.1571,30.2761"}), "application/json",
         {"location_track"}),
        (RMC, "text/plain", {"location_track"}),
        (f"{GGA}\n{RMC}", "text/plain", {"location_track"}),
        # near misses
        (json.dumps({"trackPoints": POINTS[:1]}), "application/json", set()),       # one point is no track
        (json.dumps({"stores": POINTS}), "application/json", set()),         # positions, no track key
        (RMC[:-2] + ("00" if RMC[-2:] != "00" else "11"), "text/plain", set()),     # wrong NMEA checksum
        (json.dumps({"route": "/api/v1/orders"}), "application/json", set()),
    ],
)
def test_location_track_table(engine, body, content_type, expected):
    assert types_in(engine, body.encode(), content_type) & {"location_track"} == expected
