"""A CSV, JSON or XML document uploaded as a multipart file part is detected exactly as the same document
sent as the whole body (issue 10 §3): every keyed type of the catalog, under every one of its key hints.

The one legitimate difference is the key path's root. Rule: a part's key path is the bare body's key path
with its root (`$`, `csv`, `xml`) replaced by `multipart.<field name>` — `csv[*].姓名` becomes
`multipart.file[*].姓名`, `$[*].idNo` becomes `multipart.file[*].idNo`, `xml.rows.row[*].xm` becomes
`multipart.file.rows.row[*].xm` — and the field name, like the root it replaces, says nothing about the
values inside the document (`file` is no parent that rules out person names, `idCard` no key that makes
every column an ID). Field types, occurrences, record indexes, keyed hashes (the person-level values),
masked samples, confidences and important-data candidates are equal.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from detectors.catalog import load_catalog
from detectors.engine import Engine, Inspection
from detectors.keys import segments
from detectors.walkers.common import path_key, rebase

from .conftest import CONFIGS
from .helpers import card, rid
from .test_device_id import IMEI
from .test_face_biometric import JPEG
from .test_genetic import SEQ
from .test_keyed_types import TEMPLATE
from .test_other_types import USCC
from .test_vin import VIN

# One value per keyed type, detected under each of the type's key hints (test_every_keyed_type_has_a_sample
# keeps this table complete when the catalog grows).
SAMPLES: dict[str, str] = {
    "person_name": "张三", "resident_id_cn": rid("11010519491231002"), "passport_no": "E12345678",
    "travel_permit": "C12345678", "mobile_cn": "13812345678", "landline_cn": "0571-88888888",
    "email": "zhangsan@example.com", "postal_address": "浙江省杭州市西湖区文三路90号",
    "date_of_birth": "1990-01-01", "demographic": "汉族", "bank_card": card("622202"),
    "bank_account": "6228480402564890018", "auth_secret": "Passw0rd!", "transaction_record": "本月消费 12 笔",
    "health_medical": "E11.9", "genetic": SEQ, "face_biometric": JPEG, "other_biometric": TEMPLATE,
    "religion": "佛教", "criminal_record": "2019年盗窃罪判处有期徒刑一年",
    "precise_location": "30.274084,120.155070",
    "location_track": "120.1551,30.2741;120.1561,30.2751;120.1571,30.2761", "vehicle_plate": "浙A12345",
    "vin": VIN, "device_id": IMEI, "ip_address": "203.0.113.7", "online_account": "zhangsan_88",
    "communications": "晚上一起吃饭吗", "org_credit_code": USCC
}
# HL7 v2 field names (`PID-5`) are hints for HL7 messages only, not column or element names.
_HL7_FIELD = re.compile(r"^[A-Z][A-Z0-9]{2}-\d")
_XML_NAME = re.compile(r"^[^\W\d][\w.\-]*$")
_CATALOG = load_catalog(Path(CONFIGS) / "field_types.yaml")
# Types the engine detects under their key hints (important_data's hints only name the candidates that
# detectors/important.py finds; those are compared too).
KEYED = [ft for ft in _CATALOG.field_types if ft.key_hints and ft.patterns]
_MIME = {"csv": "text/csv", "json": "application/json", "xml": "application/xml"}


def _hints(field_type: str, fmt: str) -> list[str]:
    ft = next(f for f in KEYED if f.id == field_type)
    hints = [h for h in ft.key_hints if not _HL7_FIELD.match(h)]
    return [h for h in hints if _XML_NAME.match(h)] if fmt == "xml" else hints


def document(field_type: str, fmt: str) -> bytes:
    """Two records, one column / key / element per key hint of the type, the type's sample in each."""
    hints = _hints(field_type, fmt)
    value = SAMPLES[field_type]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(hints)
        writer.writerows([[value] * len(hints)] * 2)
        return out.getvalue().encode()
    if fmt == "json":
        return json.dumps([dict.fromkeys(hints, value)] * 2, ensure_ascii=False).encode()
    row = "".join(f"<{h}>{escape(value)}</{h}>" for h in hints)
    return f'<?xml version="1.0" encoding="UTF-8"?><rows><row>{row}</row><row>{row}</row></rows>'.encode()


@dataclass(frozen=True)
class Shape:
    """How the document travels as a part, and the bare body's Content-Type it must be detected like."""

    name: str
    field: str                  # the form field name
    part_type: str | None       # the part's Content-Type header (None: no header)
    filename: str | None
    bare_type: str | None

    def multipart(self, content: bytes) -> tuple[bytes, str]:
        disposition = f'Content-Disposition: form-data; name="{self.field}"'
        if self.filename is not None:
            disposition += f'; filename="{self.filename}"'
        head = disposition + (f"\r\nContent-Type: {self.part_type}" if self.part_type else "")
        body = (b"--EwBoundary7\r\n" + head.encode() + b"\r\n\r\n" + content + b"\r\n--EwBoundary7--\r\n")
        return body, "multipart/form-data; boundary=EwBoundary7"


def _shapes(fmt: str) -> list[Shape]:
    mime = _MIME[fmt]
    shapes = [
        Shape("typed", "file", mime, f"people.{fmt}", mime),
        # application/octet-stream or no type at all: the file name's extension says what it is.
        Shape("octet-stream", "upload", "application/octet-stream", f"people.{fmt}", mime),
        Shape("untyped", "idCard", None, f"people.{fmt}", mime),
        # A browser's guess for a file it has no type for; the extension still decides.
        Shape("text-plain", "file", "text/plain", f"people.{fmt}", mime),
        # A JavaScript Blob: filename "blob", no extension: sniffed as a body of that type would be.
        Shape("blob", "file", "application/octet-stream", "blob", "application/octet-stream"),
        Shape("blob-untyped", "data", None, "blob", None),
    ]
    if fmt == "csv":
        # What Windows browsers send for .csv when Excel is installed.
        shapes.append(Shape("ms-excel", "file", "application/vnd.ms-excel", "people.csv", mime))
    return shapes


CASES = [pytest.param(ft.id, fmt, shape, id=f"{ft.id}-{fmt}-{shape.name}")
         for ft in KEYED for fmt in ("csv", "json", "xml") for shape in _shapes(fmt)]


def _part_path(bare_path: str, field: str) -> str:
    """The rule in the module docstring: the bare root replaced by `multipart.<field>`."""
    return rebase(bare_path, path_key("multipart", field))


Row = tuple[object, ...]


def _observed(result: Inspection, field: str | None) -> tuple[list[Row], list[Row]]:
    """(hits, important candidates) in a comparable form, bare key paths mapped by the rule."""

    def path(p: str | None) -> str | None:
        return _part_path(p, field) if field is not None and p is not None else p

    hits = sorted((h.field_type, h.record_index, h.value_key, h.masked, h.confidence, h.identifier,
                   h.sensitive, h.important_subcategory, path(h.key_path)) for h in result.hits)
    important = sorted((i.subcategory, i.evidence, i.terms, path(i.key_path), i.confidence)
                       for i in result.important)
    return hits, important


@pytest.mark.parametrize(("field_type", "fmt", "shape"), CASES)
def test_part_detected_like_the_bare_body(engine: Engine, field_type: str, fmt: str, shape: Shape) -> None:
    content = document(field_type, fmt)
    bare = engine.inspect(content, shape.bare_type)
    body, content_type = shape.multipart(content)
    part = engine.inspect(body, content_type)
    expected_hits, expected_important = _observed(bare, shape.field)
    got_hits, got_important = _observed(part, None)
    # The case can fail: the bare body shows the type (a value, or an important-data candidate).
    shown = {h[0] for h in expected_hits} | ({"important_data"} if expected_important else set())
    assert field_type in shown
    assert got_hits == expected_hits
    assert got_important == expected_important


def test_every_keyed_type_has_a_sample() -> None:
    assert {ft.id for ft in KEYED} == set(SAMPLES)
    assert len(KEYED) >= 25


def test_issue_example_name_column_in_a_csv_file_part(engine: Engine) -> None:
    """The report: 姓名 found in a bare text/csv body, lost in the same CSV uploaded as a file part."""
    content = "姓名,手机号\r\n张三,13812345678\r\n".encode()
    body, content_type = Shape("typed", "file", "text/csv", "people.csv", None).multipart(content)
    hits = {(h.field_type, h.key_path, h.record_index) for h in engine.inspect(body, content_type).hits}
    assert hits == {("person_name", "multipart.file[*].姓名", 0),
                    ("mobile_cn", "multipart.file[*].手机号", 0)}


def test_field_name_still_keys_a_plain_form_field(engine: Engine) -> None:
    """A form field's name is its value's key: the rule above is about documents inside parts."""
    body = (b'--b\r\nContent-Disposition: form-data; name="xm"\r\n\r\n' + "张三".encode()
            + b"\r\n--b--\r\n")
    hits = engine.inspect(body, "multipart/form-data; boundary=b").hits
    assert [(h.field_type, h.key_path) for h in hits] == [("person_name", "multipart.xm")]


@pytest.mark.parametrize("part_type", ["text/plain", "application/vnd.ms-excel", None])
def test_csv_extension_beats_a_guessed_type(engine: Engine, part_type: str | None) -> None:
    """One data row is too short to sniff as a table (a bare text/plain body of it is text); the filename
    says CSV, so the part is read as the bare text/csv body."""
    content = "姓名,身份证号\r\n张三,11010519491231002X\r\n".encode()
    body, content_type = Shape("one-row", "file", part_type, "people.csv", None).multipart(content)
    expected, _ = _observed(engine.inspect(content, "text/csv"), "file")
    got, _ = _observed(engine.inspect(body, content_type), None)
    assert {h[0] for h in got} == {"person_name", "resident_id_cn"}
    assert got == expected


@pytest.mark.parametrize(("path", "expected"), [
    ("multipart.file[*].姓名", ["姓名"]),
    ("multipart['my file'].orders[*].idNo", ["orders", "idNo"]),
    ("multipart.sfzh", ["sfzh"]),                 # a plain form field: the name is the key
    ("multipart[*].xm", ["xm"]),                  # an unnamed part (multipart/mixed): no field name
    ("$.file.xm", ["file", "xm"]),
])
def test_key_segments_of_part_paths(path: str, expected: list[str]) -> None:
    assert segments(path) == expected
