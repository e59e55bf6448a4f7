"""Hostile documents against the real collector (DESIGN §9 "Hostile input"): an alias bomb, a document over
max_document_bytes, a 100k-deep JSON filing, a scale of 2**63 persons, a check period in year 9999 — each a
quick 4xx in the one error shape, never a 500, a traceback in the log or a frozen service; and /healthz keeps
answering while the largest documents the caps allow are being parsed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.collector_server import CollectorServer, demo_filing, start_collector, wait_healthy
from tests.conftest import ROOT
from tests.detectors.test_safeyaml import laughs
from tests.security.conftest import FILING_ID, assert_error_shape

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 262144       # the `collector` fixture's limits


def put_filing(srv: CollectorServer, who: str, body: bytes | str, filing_id: str = FILING_ID,
               timeout: float = 60) -> httpx.Response:
    with srv.client(who, timeout=timeout) as c:
        return c.put(f"/v1/filings/{filing_id}", content=body)


def no_traceback(srv: CollectorServer) -> None:
    text = srv.log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in text and "RecursionError" not in text, text[-4000:]


@pytest.mark.parametrize("bomb", [
    pytest.param(laughs(9, 9), id="billion-laughs-80-aliases"),
    pytest.param("a: &a [" + ", ".join(["lol"] * 100) + "]\nb: [" + ", ".join(["*a"] * 6000) + "]\n",
                 id="24KB-of-aliases"),
])
def test_an_alias_bomb_is_refused_quickly(collector: CollectorServer, bomb: str) -> None:
    body = (bomb + yaml.safe_dump(demo_filing(), allow_unicode=True)).encode()
    r = put_filing(collector, "enterprise", body)
    # Refused by the composer's budgets (the message names them), i.e. before anything expanded.
    err = assert_error_shape(r, 422, "body")
    assert "alias" in err["message"] and ("max_document_aliases 100" in err["message"]
                                          or "max_document_bytes 262144" in err["message"]), err
    assert collector.call(None, "GET", "/healthz").status_code == 200


def scalar_bomb_filing(filing_id: str, scalar_bytes: int = 900_000, aliases: int = 99) -> bytes:
    """The security review's filing: valid, 0.9 MB, within every cap as written — one anchored 900 KB
    string (the processor's name) and 99 aliases of it (recipients' names), a single node each, so within
    the alias budget (100) and the node budget. Stored as sent it was an 85 MiB filing version."""
    filing = demo_filing(filing_id=filing_id)
    filing["processor"]["name"] = "@@anchor@@"
    filing["recipients"] += [{"recipient_id": f"X{i}", "name": "@@alias@@", "country_region": "SG",
                              "declared_endpoints": {"domains": [], "ip_cidrs": []}} for i in range(aliases)]
    text = yaml.safe_dump(filing, allow_unicode=True, sort_keys=False, width=1 << 30)
    text = text.replace("'@@anchor@@'", "&name " + "x" * scalar_bytes).replace("'@@alias@@'", "*name")
    return text.encode()


def test_aliases_of_a_big_scalar_are_refused_not_stored_expanded(tmp_path: Any) -> None:
    """Under the default max_document_bytes (1 MiB; the module's service has 256 KiB, which this body is
    over) the 0.9 MB filing is refused at composition, naming the cap, and nothing is stored."""
    from tests.collector_server import start_collector

    filing_id = f"{FILING_ID}-aliases"
    body = scalar_bomb_filing(filing_id)
    assert 900_000 < len(body) < 1024 * 1024 and body.count(b"*name") == 99
    srv = start_collector(tmp_path, max_upload_bytes=4_000_000)
    try:
        r = put_filing(srv, "regulator", body, filing_id=filing_id)
        err = assert_error_shape(r, 422, "body")
        assert "YAML aliases expand the document beyond max_document_bytes 1048576" in err["message"], err
        assert srv.call("regulator", "GET", f"/v1/filings/{filing_id}").status_code == 404
        assert srv.call(None, "GET", "/healthz").status_code == 200
        no_traceback(srv)
    finally:
        srv.stop()


@pytest.mark.parametrize(("route", "who"), [(f"/v1/filings/{FILING_ID}", "enterprise"),
                                            ("/v1/negative-lists/zj-ftz-example", "regulator")])
def test_a_document_over_max_document_bytes_is_413(collector: CollectorServer, route: str, who: str) -> None:
    body = json.dumps(demo_filing()).encode()
    body += b" " * (MAX_DOCUMENT_BYTES + 1 - len(body))
    r = collector.call(who, "PUT", route, content=body)
    err = assert_error_shape(r, 413, "body")
    assert "max_document_bytes 262144" in err["message"], err


def test_a_100k_deep_json_filing_is_422_without_a_traceback(collector: CollectorServer) -> None:
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    for body in (deep, json.dumps(demo_filing(extra="@@")).encode().replace(b'"@@"', deep)):
        err = assert_error_shape(put_filing(collector, "enterprise", body), 422, "body")
        assert "max_document_depth 32" in err["message"], err
    no_traceback(collector)


@pytest.mark.parametrize("scale", [2**63, 10**400])
def test_a_scale_beyond_the_bound_is_422_naming_its_path(collector: CollectorServer, scale: int) -> None:
    filing = demo_filing()
    filing["scenarios"][0]["scale"]["persons_nonsensitive"] = scale
    err = assert_error_shape(put_filing(collector, "enterprise", json.dumps(filing)), 422,
                             "scenarios[0].scale.persons_nonsensitive")
    assert "less than or equal to 10000000000" in err["message"], err
    no_traceback(collector)


@pytest.mark.parametrize("field", ["from", "to"])
def test_a_check_period_in_year_9999_is_422_naming_the_field(collector: CollectorServer, field: str) -> None:
    r = put_filing(collector, "regulator", json.dumps(demo_filing()))
    assert r.status_code in (200, 201), r.text
    r = collector.call("regulator", "POST", "/v1/checks/run",
                       json={"filing_id": FILING_ID, field: "9999-12-31"})
    err = assert_error_shape(r, 422, field)
    assert "1970-01-01..2100-12-31" in err["message"], err
    no_traceback(collector)


def largest_filing(filing_id: str, cap: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The demo filing grown with recipients to just under `cap`, as compact JSON: of the shapes measured
    (recipients, domains, CIDRs, catalog items; JSON, flow and block YAML) the slowest to parse and
    validate per byte."""
    base = demo_filing(filing_id=filing_id)

    def recipient(i: int) -> dict[str, Any]:
        return {"recipient_id": f"X{i}", "name": "Partner Logistics Pte. Ltd.", "country_region": "SG",
                "declared_endpoints": {"domains": [f"api{i}.partner.example"],
                                       "ip_cidrs": [f"10.{i // 256 % 256}.{i % 256}.0/24"]}}

    def render(n: int) -> bytes:
        filing = {**base, "recipients": base["recipients"] + [recipient(i) for i in range(n)]}
        return json.dumps(filing, ensure_ascii=False, separators=(",", ":")).encode()

    lo, hi = 0, cap // 64                 # a recipient takes more than 64 bytes: render(hi) is over the cap
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if len(render(mid)) < cap else (lo, mid)
    return render(lo)


def start_probed(tmp: Path, **config: Any) -> tuple[CollectorServer, Path]:
    """A collector configured as `start_collector` makes it, run by tests/security/parse_probe.py: the same
    service, each filing parse marked (`start N`, `end N`) in the file returned."""
    srv = start_collector(tmp, **config)              # writes collector.yaml and the data directory
    srv.stop()
    marks = tmp / "parses.txt"
    with open(srv.log, "w") as fh:
        argv = [sys.executable, "-m", "tests.security.parse_probe", str(marks), str(srv.config_path)]
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, text=True)
    try:
        wait_healthy(srv.url, proc, srv.log)
    except AssertionError:
        proc.kill()
        raise
    return dataclasses.replace(srv, proc=proc), marks


def in_flight(marks: Path) -> set[int]:
    """Parses entered and not yet returned, by the probe's marks."""
    started, ended = set(), set()
    for line in marks.read_text().splitlines() if marks.exists() else ():
        what, n = line.split()
        (started if what == "start" else ended).add(int(n))
    return started - ended


class Poller:
    """/healthz, sent each time a parse is in flight, until `alive()` is False. `during` holds, for each
    answer, the parses in flight from before it was sent until after it came: on the event loop a parse
    would hold every answer until it ended, so a non-empty `during` proves the parse runs off the loop."""

    def __init__(self, url: str, marks: Path) -> None:
        self.url, self.marks = url, marks
        self.answers = 0
        self.during: list[set[int]] = []

    def run(self, alive: Any) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as c:
            while alive():
                before = in_flight(self.marks)
                if not before:
                    time.sleep(0.005)           # waiting for a parse to start (readiness), not a measurement
                    continue
                r = c.get("/healthz")
                assert r.status_code == 200, r.text
                self.answers += 1
                if throughout := before & in_flight(self.marks):
                    self.during.append(throughout)


def uploads_in_flight(srv: CollectorServer, marks: Path, bodies: list[bytes], rounds: int) -> tuple[Poller,
                                                                                                 list[int]]:
    """Each body PUT `rounds` times from its own thread while /healthz is polled. The URL's id differs from
    the body's: the whole document is parsed and validated, then refused (422) — nothing is stored, and
    the parse is as long as a real upload's."""
    statuses: list[int] = []
    lock = threading.Lock()
    started = threading.Barrier(len(bodies) + 1)

    def send(i: int) -> None:
        with srv.client("enterprise", timeout=120) as c:
            started.wait()
            for _ in range(rounds):
                r = c.put(f"/v1/filings/{FILING_ID}-other{i}", content=bodies[i])
                with lock:
                    statuses.append(r.status_code)

    threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(len(bodies))]
    for t in threads:
        t.start()
    started.wait()
    poller = Poller(srv.url, marks)
    poller.run(lambda: any(t.is_alive() for t in threads))
    for t in threads:
        t.join(timeout=120)
    return poller, statuses


def test_healthz_answers_while_large_documents_are_parsed(tmp_path: Path) -> None:
    """Parsing happens off the event loop: while uploads of the largest document the caps allow are parsed
    (three at a time), /healthz answers with a parse provably in flight — entered before the request was
    sent, not returned when the answer came."""
    srv, marks = start_probed(tmp_path, max_upload_bytes=4_000_000,
                              limits={"max_document_bytes": MAX_DOCUMENT_BYTES})
    try:
        bodies = [largest_filing(f"{FILING_ID}-big{i}") for i in range(3)]
        poller, statuses = uploads_in_flight(srv, marks, bodies, rounds=4)
    finally:
        srv.stop()
    log.info("%d uploads of %d bytes, 3 at a time; /healthz answered %d times, %d of them during a parse",
             len(statuses), len(bodies[0]), poller.answers, len(poller.during))
    assert statuses == [422] * 12, statuses
    assert in_flight(marks) == set() and "end 12" in marks.read_text()       # every parse was marked
    assert poller.during, f"no /healthz answered while a parse was in flight ({poller.answers} answers)"


def test_healthz_answers_during_one_long_document_parse(tmp_path: Path) -> None:
    """One upload long enough to tell: a 2 MiB document (cap raised for this service). Parsed on the event
    loop, a /healthz sent during it would be answered only after it; off the loop it is answered while the
    parse is still running."""
    cap = 2 * 1024 * 1024
    srv, marks = start_probed(tmp_path, max_upload_bytes=2 * cap, limits={"max_document_bytes": cap})
    try:
        body = largest_filing(f"{FILING_ID}-big", cap)
        poller, statuses = uploads_in_flight(srv, marks, [body], rounds=1)
    finally:
        srv.stop()
    log.info("one upload of %d bytes; /healthz answered %d times during its parse", len(body),
             len(poller.during))
    assert statuses == [422]
    assert marks.read_text().split("\n") == ["start 1", "end 1", ""]
    assert poller.during and all(d == {1} for d in poller.during), (poller.answers, poller.during)
