"""No raw PI at rest from the agent (issue 9, findings 1 and 2): attacker-chosen header values and keys that
are values reach no anomaly detail, key path or flow name — through the real `egress-agent run`.

One capture, run once per module: HTTP requests whose headers hold PI-shaped values in every place the HTTP
framer complains about (Content-Encoding, Transfer-Encoding, Content-Length, Host, an obs-fold field name, a
malformed field line), a malformed TLS ClientHello carrying a phone number, and a JSON body keyed by phone,
ID and card numbers and by people's names. The anomalies must still be there, described, not quoted.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import BIN, FIXTURES

sys.path.insert(0, str(FIXTURES / "pcaps"))
craft = importlib.import_module("craft")

CLIENT = craft.Host("10.20.0.5", "02:00:00:00:00:05")
SERVER = craft.Host("203.116.1.10", "02:00:00:00:00:01")     # SG: cross-border, inspected
RID = "110105194912310021"
PI = ("13812345678", RID, "138-1234-5678", "13712345678", "13912345678", "6222021234567890", "张三",
      "13612345678", "1101-0519-4912-3100-2X", "6222 0212 3456 7890", "王小明")
# Nine or more digits in a row, with or without separators: no length or offset the agent writes has as
# many; every phone, ID and card number does.
_LONG_NUMBER = re.compile(r"\d(?:[\s\-.]*\d){8,}")


def _post(head: bytes, body: bytes = b"") -> bytes:
    return b"POST /v1/upload HTTP/1.1\r\n" + head + b"\r\n" + body


REQUESTS: list[bytes] = [
    # unsupported_coding (the coding name) — and a Host that is a phone number (flows.server_name)
    _post(b"Host: 13712345678\r\nContent-Encoding: 13812345678\r\nContent-Length: 2\r\n", b"{}"),
    # bad_transfer_encoding + unsupported_coding (a resident ID as the transfer coding)
    _post(b"Host: api.partner-logistics.example\r\nTransfer-Encoding: " + RID.encode() + b"\r\n", b"x" * 10),
    # bad_content_length
    _post(b"Host: api.partner-logistics.example\r\nContent-Length: 138-1234-5678\r\n", b"x" * 10),
    # obs_fold on a field named by a phone number, a malformed field line holding a name and a number
    b"GET /v1/ping HTTP/1.1\r\nHost: api.partner-logistics.example\r\n13912345678: a\r\n"
    b" 6222021234567890\r\n" + "张三 13612345678\r\n".encode() + b"\r\n",
    # a Host with a name in it (not a host name at all)
    b"GET /v1/ping HTTP/1.1\r\nHost: " + "张三".encode() + b"\r\n\r\n",
]

BODY = json.dumps({
    "byPhone": {"138-1234-5678": {"姓名": "李四", "idNo": "11010519491231002X"}},
    "byId": {"1101-0519-4912-3100-2X": {"手机号": "13912345678"}},
    "cards": {"6222 0212 3456 7890": {"xm": "赵六"}},
    "张三": {"mobile": "13812345678"},
    "王小明": {"sjh": "13712345678"},
}, ensure_ascii=False).encode()
KEYED = (b"POST /v1/orders HTTP/1.1\r\nHost: api.partner-logistics.example\r\n"
         b"Content-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


TLS_ALERT = b"\x15\x03\x03\x00\x02\x02\x28"      # handshake_failure


def _bad_client_hello() -> bytes:
    # A complete handshake record that claims a ClientHello, its body garbage holding a phone number.
    body = b"\x03\x03" + b"13812345678" * 4
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


def _capture(path: Path) -> None:
    cap = craft.Capture(now_us=1_767_225_600 * 1_000_000)
    ids = craft.IpIds()
    payloads = [(80, r) for r in REQUESTS] + [(80, KEYED), (443, _bad_client_hello())]
    for n, (port, payload) in enumerate(payloads):
        conn = craft.TcpConn(cap, ids, CLIENT, SERVER, 41000 + n, port, isn_c=1000 * n, isn_s=7000 * n)
        conn.handshake()
        conn.send(payload)
        conn.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" if port == 80 else TLS_ALERT)
        conn.close()
    craft.write_bytes(path, craft.pcap_bytes(cap.frames))


def _rows(out: Path, record_type: str) -> list[dict[str, Any]]:
    return [r for f in sorted((out / record_type).glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pi-at-rest")
    pcap, cfg, out = tmp / "pi.pcap", tmp / "agent.yaml", tmp / "out"
    _capture(pcap)
    cfg.write_text(f"agent_id: sec-test\nsubject_key_file: {tmp / 'k.key'}\ndetector_workers: 1\n")
    proc = subprocess.run([str(BIN / "egress-agent"), "run", "--pcap", str(pcap), "--config", str(cfg),
                           "--out", str(out)], cwd=tmp, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for raw in PI:
        assert raw not in proc.stdout + proc.stderr, raw
    return out


def test_header_anomalies_are_recorded_but_describe_the_value_instead_of_quoting_it(out: Path) -> None:
    anomalies = _rows(out, "anomalies")
    names = {a["name"] for a in anomalies}
    assert {"unsupported_coding", "bad_transfer_encoding", "bad_content_length", "obs_fold",
            "malformed_field_line", "bad_host", "malformed_client_hello"} <= names, names
    for a in anomalies:
        detail = a["detail"] or ""
        assert not _LONG_NUMBER.search(detail), a
        for raw in PI:
            assert raw not in detail, a
    # Described: the analyst still learns what kind of value it was.
    coding = [a["detail"] for a in anomalies if a["name"] == "unsupported_coding"]
    assert any("digits(11)" in d for d in coding) and any("digits(18)" in d for d in coding), coding
    folded = next(a["detail"] for a in anomalies if a["name"] == "obs_fold")
    assert "digits(11)" in folded, folded


def test_a_host_that_is_a_value_names_no_flow(out: Path) -> None:
    flows = _rows(out, "flows")
    assert len(flows) == len(REQUESTS) + 2
    for f in flows:
        for raw in PI:
            assert raw not in (f["server_name"] or ""), f
    # A real host name still names its flow.
    assert sum(f["server_name"] == "api.partner-logistics.example" for f in flows) >= 3


def test_keys_that_are_values_reach_no_key_path_while_hints_stay(out: Path) -> None:
    detections = _rows(out, "detections")
    paths = [p for d in detections for p in d["key_paths"]]
    assert paths, detections
    for path in paths:
        assert not _LONG_NUMBER.search(path), path
        for raw in PI:
            assert raw not in path, path
    kept = {"$.byPhone.<value>.idNo", "$.byId.<value>.手机号", "$.<value>.mobile", "$.<value>.sjh"}
    assert kept <= set(paths), paths
    for d in detections:
        for sample in d["masked_samples"]:
            assert sample not in PI
