"""Builders for collector tests: agent records written as a spool (`DIR/<record_type>/*.parquet`) and
filings derived from the reference example. Fixtures live in conftest.py."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from agent.records import (
    PI_VALUES_SCHEMA,
    SCHEMA_VERSION,
    DetectionRecord,
    Envelope,
    FlowRecord,
    PiValueRecord,
    to_table,
)
from collector.checks.runner import CHECKS_DIR, CheckResult
from collector.inspection import run_inspection
from collector.models import Filing
from collector.negative_lists import NegativeList
from collector.persons import calendar_year

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_FILING = REPO / "configs" / "filings" / "example.yaml"
EXAMPLE_NEGATIVE_LIST = REPO / "configs" / "negative_lists" / "zhejiang-example.yaml"
PERIOD = calendar_year(2026)

# Endpoints of the example filing: R1 (scenario booking), R2 (scenario crew-management).
BOOKING_HOST = "booking.gfb-freight.example"
EDI_HOST = "in.edi.gfb-freight.example"
CREW_IP = "203.116.40.7"
UNDECLARED_HOST = "collect.unknown-tracker.example"

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
CREW = {"server_name": None, "dst_ip": CREW_IP, "country": "SG"}
_ids = itertools.count(1)


def flow(
    flow_id: str | None = None, *, server_name: str | None = BOOKING_HOST, dst_ip: str = "198.51.100.10",
    country: str | None = "DE", cross_border: bool = True, ts: datetime = T0, bytes_out: int = 1000,
    encrypted: bool = False, inspected: bool = True, sample_weight: float = 1.0, src_port: int = 40000,
    initiator: str = "internal", visibility: str | None = None, reason: str | None = None,
    alpn: str | None = None,
) -> FlowRecord:
    """A flow record; `sample_weight` is 1 / the agent's sampling rate (1.0: every flow inspected).
    `visibility` defaults to what `encrypted` says; `reason` (uninspected_reason) to the usual one of an
    uninspected flow (no_secrets when encrypted and cross-border; None otherwise: no export, no content)."""
    if reason is None and not inspected and cross_border and encrypted:
        reason = "no_secrets"
    return FlowRecord(
        flow_id=flow_id or f"f{next(_ids):04d}", ts_start=ts, ts_end=ts + timedelta(seconds=2),
        src_ip="10.0.0.5", dst_ip=dst_ip, src_port=src_port, dst_port=443, transport="tcp",
        app="tls" if encrypted else "http", server_name=server_name, dst_country=country,
        cross_border=cross_border, bytes_out=bytes_out, bytes_in=100, packets_out=5, packets_in=4,
        missed_bytes=0, encrypted=encrypted, inspected=inspected, sample_weight=sample_weight, requests=1,
        initiator=initiator, visibility=visibility or ("encrypted" if encrypted else "plaintext"), alpn=alpn,
        uninspected_reason=reason,
    )


def detection(flow_id: str, field_type: str, *, sensitive: bool = False, occurrences: int = 1,
              important: str | None = None) -> DetectionRecord:
    return DetectionRecord(
        flow_id=flow_id, field_type=field_type, sensitive=sensitive, important_subcategory=important,
        occurrences=occurrences, key_paths=(f"$.data[*].{field_type}",), confidence=0.9,
        masked_samples=("138****0000",),
    )


def pi(flow_id: str, record_key: int, field_type: str, value_key: int, *, identifier: bool = False,
       sensitive: bool = False, key_id: str | None = None) -> PiValueRecord:
    return PiValueRecord(flow_id=flow_id, record_key=record_key, field_type=field_type,
                         value_key=value_key, key_id=key_id, identifier=identifier, sensitive=sensitive)


def write_records(
    root: Path, flows: list[FlowRecord], detections: list[DetectionRecord] = (),
    pi_values: list[PiValueRecord] = (),
) -> Path:
    """Write one batch per record type, like the agent's spool; empty types get no file at all."""
    env = Envelope(agent_id="test-agent", enterprise_id="nb-shipping-demo", batch_id="b1")
    for record_type, rows in (("flows", flows), ("detections", detections), ("pi_values", pi_values)):
        if rows:
            (root / record_type).mkdir(parents=True, exist_ok=True)
            pq.write_table(to_table(record_type, rows, env), root / record_type / "b1.parquet")
    return root


def example_data() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE_FILING.read_text(encoding="utf-8"))


def make_filing(**changes: Any) -> Filing:
    """The example filing with top-level keys replaced."""
    data = copy.deepcopy(example_data())
    data.update(changes)
    return Filing.model_validate(data)


def with_routes(routes: dict[str, str], subcategories: dict[str, str] | None = None) -> Filing:
    """The example filing with some scenarios' routes (and negative-list sub-categories) replaced."""
    data = copy.deepcopy(example_data())
    for scenario in data["scenarios"]:
        sid = scenario["scenario_id"]
        if sid in routes:
            scenario["route"] = routes[sid]
        if subcategories and sid in subcategories:
            scenario["negative_list_match"]["subcategory"] = subcategories[sid]
    return Filing.model_validate(data)


def important_candidate(flow_id: str, subcategory: str, terms: tuple[str, ...] = ("vcf",)) -> DetectionRecord:
    """An agent row for an important-data candidate: masked_samples hold the matched term names."""
    return DetectionRecord(
        flow_id=flow_id, field_type="important_data", sensitive=False, important_subcategory=subcategory,
        occurrences=1, key_paths=("$.samples[*].genotype",), confidence=0.9, masked_samples=terms,
    )


@dataclass(frozen=True, slots=True)
class Persons:
    """`n` one-identifier records on a flow, each a distinct person: value keys and record keys
    start..start+n-1 (the same range on two flows = the same persons). Written with pyarrow directly,
    100,000 rows take a fraction of a second where dataclasses would take seconds."""

    flow_id: str
    n: int
    field_type: str = "mobile_cn"
    sensitive: bool = False
    start: int = 0


def write_persons(root: Path, specs: Sequence[Persons], batch: str = "bulk") -> Path:
    """Add a pi_values batch holding `specs` to the spool at `root` (beside write_records' b1)."""
    if not specs:
        return root
    cols: dict[str, list[pa.Array]] = {f.name: [] for f in PI_VALUES_SCHEMA}
    for sp in specs:
        keys = pa.array(range(sp.start, sp.start + sp.n), pa.int64())
        fixed = {"schema_version": SCHEMA_VERSION, "agent_id": "test-agent",
                 "enterprise_id": "nb-shipping-demo", "batch_id": batch, "flow_id": sp.flow_id,
                 "field_type": sp.field_type, "identifier": True, "sensitive": sp.sensitive, "key_id": None}
        for f in PI_VALUES_SCHEMA:
            if f.name in ("record_key", "value_key"):
                cols[f.name].append(keys)
            else:
                cols[f.name].append(pa.array([fixed[f.name]] * sp.n, f.type))
    table = pa.table({name: pa.concat_arrays(parts) for name, parts in cols.items()}, schema=PI_VALUES_SCHEMA)
    (root / "pi_values").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / "pi_values" / f"{batch}.parquet")
    return root


def check_spool(
    records: Path, *, filing: Filing | None = None, negative_lists: Sequence[NegativeList] = (),
    as_of: datetime | None = None, period: tuple[datetime, datetime] = PERIOD, checks_dir: Path = CHECKS_DIR,
) -> dict[str, CheckResult]:
    """Every check over a spool against a filing (the example by default), as of the end of the period
    unless `as_of` says otherwise."""
    return run_inspection(records, filing or make_filing(), negative_lists=negative_lists, period=period,
                          now=as_of or period[1], checks_dir=checks_dir, report=False).by_check()


def findings_of(results: dict[str, CheckResult], check: str) -> list[tuple]:
    """(scenario_id, subject, severity) of a check's findings, in its order; the check must have run."""
    r = results[check]
    assert r.status != "error", r.error
    return [(f.scenario_id, f.subject, f.severity) for f in r.findings]


def filing_with(mutate: Any) -> Filing:
    """The example filing after `mutate(data)` edits its parsed YAML in place."""
    data = copy.deepcopy(example_data())
    mutate(data)
    return Filing.model_validate(data)


def set_at(path: tuple[str | int, ...], value: Any) -> Callable[[dict], None]:
    """A mutation for the invalid-document tables: set the value at a key path of a loaded YAML mapping."""
    def mutate(d: dict) -> None:
        for part in path[:-1]:
            d = d[part]
        d[path[-1]] = value
    return mutate


def delete_at(path: tuple[str | int, ...]) -> Callable[[dict], None]:
    """A mutation for the invalid-document tables: delete the key at a key path."""
    def mutate(d: dict) -> None:
        for part in path[:-1]:
            d = d[part]
        del d[path[-1]]
    return mutate
