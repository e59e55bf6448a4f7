"""face_biometric: base64 JPEG (/9j/) or PNG (iVBOR) under face/photo keys; float vectors of 128/256/512
numbers under face-feature keys (also as JSON arrays). Images anywhere else are never scanned for PI."""

from __future__ import annotations

import base64
import json
import random

import pytest

from .helpers import types_in

_rng = random.Random(11)
JPEG = "/9j/4AAQSkZJRgABAQ" + base64.b64encode(bytes(_rng.randrange(256) for _ in range(900))).decode()
PNG = ("data:image/png;base64,iVBORw0KGgo"
       + base64.b64encode(bytes(_rng.randrange(256) for _ in range(900))).decode())
VEC512 = [round(_rng.uniform(-1, 1), 6) for _ in range(512)]
VEC100 = VEC512[:100]
# An image with a mobile-shaped digit run inside its base64: still not a mobile number.
JPEG_DIGITS = JPEG[:200] + "13800138000" + JPEG[200:]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"faceImg": JPEG}, {"face_biometric"}),
        ({"user": {"photo": PNG}}, {"face_biometric"}),
        ({"rlzp": JPEG}, {"face_biometric"}),
        ({"faceFeature": VEC512}, {"face_biometric"}),                     # JSON array of floats
        ({"faceFeature": ",".join(map(str, VEC512[:128]))}, {"face_biometric"}),
        # near misses
        ({"banner": JPEG}, set()),                                         # an image under another key
        ({"goods": {"photo": JPEG}}, set()),                               # a product photo
        ({"faceImg": "https://cdn.example/f.jpg"}, set()),                 # a URL, not the image
        ({"faceFeature": VEC100}, set()),                                  # 100 numbers: no face model
        ({"image": JPEG_DIGITS}, set()),                                   # no PI inside image blobs
    ],
)
def test_face_biometric_table(engine, doc, expected):
    got = types_in(engine, json.dumps(doc).encode())
    assert got == expected
