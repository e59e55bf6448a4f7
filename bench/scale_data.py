"""Agent-shaped records at zone scale (issue 13 "Measure"): flows, detections, pi_values and capture_stats of
one or several enterprises' calendar year, vectorised (numpy + pyarrow, no per-row Python), written chunk by
chunk as agent spool directories, `DIR/<enterprise>/<record_type>/<batch_id>.parquet`, each file one upload
batch. Deterministic for a seed: every value is a hash of (seed, enterprise, what, index), so any chunk can
be generated on its own and memory stays one chunk (plus the person weights, 8 bytes per person).

Distribution (per enterprise; N = its pi_values rows, R ≈ N / 2.6 records, P ≈ N / 10 persons):
- Persons: P = R / 3.85. A record belongs to a person drawn by weight: Lomax(1.3) + 0.2 capped at 250, so
  a person has from 0 to ~250 records (most 1-3) spread over the whole year, flows, days and agents.
- Identifiers per person (field types with identifier=true in configs/field_types.yaml): mobile_cn 90 %,
  email 60 %, resident_id_cn 50 %, bank_card 25 %, device_id 20 %, passport_no 8 % (at least mobile_cn).
- Records (one JSON object each, `record_key` = its index in the flow), by kind:
  72 % identified: each of the person's identifiers with probability 0.55 (at least one), person_name
      80 %, postal_address 30 %, date_of_birth 10 %, transaction_record 15 %, precise_location 5 %,
      health_medical 3 %; 1 % of them also carry one shared hotline number (~2,800 records at 10^6 rows:
      over persons.max_records_per_key); in chain blocks (3 % of blocks of 80 consecutive persons) a
      record carries with probability 0.7 also the next person's mobile, so chains of up to 80 persons
      (a few hundred records) link. Linking components (hotline aside): 1 record (~58 %), 2-4 (~30 %),
      5-19 (~11 %), 20-99 (~1.5 %), 100-250 (~0.05 %) at 10^6 rows;
  13 % person_name + date_of_birth only, 8 % person_name + postal_address only (combination keys; names
      repeat across persons: P / 3 distinct names, 25,000 birthdays);
  7 % no person key: landline_cn, ip_address or vehicle_plate.
  A flow's destination limits which field types its records carry (the scenario's data catalog), except
  two scenarios' destinations, which also receive resident_id_cn / bank_card undeclared.
- Sensitive PI: resident_id_cn, passport_no, bank_card, transaction_record, precise_location,
  health_medical (catalog flags); the rest non-sensitive. value_key: int64 hash of (enterprise, field
  type, person or value); one key_id per enterprise when the schema has the column.
- Flows: 1-8 records per PI flow (mean 4.5, ~12 pi_values rows), plus one flow without PI per two PI
  flows (encrypted, not inspected, no_secrets). ts_start uniform over the CST calendar year `year` in
  time order (365 days), 4 agents per enterprise taking turns per chunk.
- 60 destinations: 48 under 12 declared recipients (4 each, SG US DE JP HK GB FR KR AU NL CA CH), one
  recipient's hosts in a country other than the declared one, 2 IP-only ones under a declared CIDR, 6
  undeclared trackers (US/SG), 4 domestic (CN, cross_border false). Weights Zipf-like.
- Detections: one per (flow, field type) with its occurrences; 0.2 % of PI flows also an important-data
  candidate (sub-category "17"). capture_stats: one row per agent-hour of each chunk's window.
- Batches: a chunk is ~`batch_pi_rows` pi_values rows (default 50,000) with its flows (~6,400) and
  detections (~24,000); one file per record type per chunk, batch id `<agent>-<type>-<chunk>`.
bench/scale_filing.py has the destinations and writes the matching filing (10 scenarios).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from agent.records import RECORD_TYPES, SCHEMA_VERSION
from bench.scale_filing import DESTINATIONS, SCENARIO_OF_RECIPIENT, catalog

__all__ = ["DESTINATIONS", "ScaleSpec", "enterprise_ids", "generate", "key_id"]

CST = timezone(timedelta(hours=8))
U64 = np.uint64
AGENTS = 4
CHAIN = 80                        # persons per chain block
RECORDS_PER_PERSON = 3.85
MEAN_PI_PER_RECORD = 2.6          # measured on the kinds above; decides the records per chunk

# (field_type, identifier, sensitive) in slot order; indices are the field_type dictionary.
TYPES = ("mobile_cn", "email", "resident_id_cn", "bank_card", "device_id", "passport_no", "person_name",
         "postal_address", "date_of_birth", "transaction_record", "precise_location", "health_medical",
         "landline_cn", "ip_address", "vehicle_plate")
IDENT = np.array([t in ("mobile_cn", "email", "resident_id_cn", "bank_card", "device_id", "passport_no")
                  for t in TYPES])
SENS = np.array([t in ("resident_id_cn", "bank_card", "passport_no", "transaction_record", "precise_location",
                       "health_medical") for t in TYPES])
T = {t: i for i, t in enumerate(TYPES)}
ID_SHARE = {"mobile_cn": 0.9, "email": 0.6, "resident_id_cn": 0.5, "bank_card": 0.25, "device_id": 0.2,
            "passport_no": 0.08}
EXTRA = {"person_name": 0.8, "postal_address": 0.3, "date_of_birth": 0.1, "transaction_record": 0.15,
         "precise_location": 0.05, "health_medical": 0.03}
SAMPLES = {"mobile_cn": "138****5678", "email": "a***@example.com", "resident_id_cn": "330***********123X",
           "bank_card": "622202******1234", "person_name": "张**", "passport_no": "E*******8"}


def _allowed() -> np.ndarray:
    allowed = np.ones((len(DESTINATIONS), len(TYPES)), bool)
    for d, dest in enumerate(DESTINATIONS):
        if dest.recipient is None:
            continue
        s = SCENARIO_OF_RECIPIENT[dest.recipient]
        allowed[d] = [t in catalog(s) for t in TYPES]
        if s in (8, 9):          # these two receive identifiers they never declared
            allowed[d, T["resident_id_cn"]] = allowed[d, T["bank_card"]] = True
    return allowed


ALLOWED = _allowed()


@dataclass(frozen=True, slots=True)
class ScaleSpec:
    pi_rows: int                  # pi_values rows over all enterprises
    enterprises: int = 1
    year: int = 2026
    seed: int = 13
    batch_pi_rows: int = 50_000

    def records(self) -> int:
        return max(1, round(self.pi_rows / self.enterprises / MEAN_PI_PER_RECORD))

    def persons(self) -> int:
        return max(1, round(self.records() / RECORDS_PER_PERSON))

    def chunk_records(self) -> int:
        return max(1, round(self.batch_pi_rows / MEAN_PI_PER_RECORD))

    def chunks(self) -> int:
        return math.ceil(self.records() / self.chunk_records())


def enterprise_ids(spec: ScaleSpec) -> list[str]:
    return [f"bench-e{e}" for e in range(spec.enterprises)]


def key_id(enterprise_id: str) -> str:
    return hashlib.sha256(f"bench deployment key of {enterprise_id}".encode()).hexdigest()[:8]


# ---- hashing -------------------------------------------------------------------------------------------

def mix(x: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of x ^ salt (uint64, wrapping)."""
    z = x.astype(U64) ^ U64(salt & 0xFFFFFFFFFFFFFFFF)
    z = z + U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
    return z ^ (z >> U64(31))


def unit(x: np.ndarray, salt: int) -> np.ndarray:
    """A uniform float in [0, 1) per element."""
    return (mix(x, salt) >> U64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _salt(spec: ScaleSpec, e: int, what: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{spec.seed}/{e}/{what}".encode()).digest()[:8], "little")


def _vk(spec: ScaleSpec, e: int, field_type: str, x: np.ndarray) -> np.ndarray:
    return mix(x, _salt(spec, e, "vk/" + field_type)).view(np.int64)


# ---- one chunk -----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    agent_id: str
    tables: dict[str, pa.Table]


def _person_cdf(spec: ScaleSpec, e: int) -> np.ndarray:
    p = spec.persons()
    w = np.minimum(np.random.default_rng(spec.seed + e).pareto(1.3, p) + 0.2, 250.0)
    return np.cumsum(w / w.sum())


def _strs(prefix: str, ids: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pa.array(ids).cast(pa.string()), "")


def _envelope(n: int, enterprise: str, agent: str, batch_id: str) -> dict[str, pa.Array]:
    return {"schema_version": pa.array(np.full(n, SCHEMA_VERSION, np.int32)),
            "agent_id": pa.array([agent], pa.string()).take(np.zeros(n, np.int64)),
            "enterprise_id": pa.array([enterprise], pa.string()).take(np.zeros(n, np.int64)),
            "batch_id": pa.array([batch_id], pa.string()).take(np.zeros(n, np.int64))}


def _table(record_type: str, cols: dict[str, pa.Array]) -> pa.Table:
    schema = RECORD_TYPES[record_type][1]
    return pa.table([cols[f.name] if isinstance(cols[f.name], pa.Array | pa.ChunkedArray)
                     else pa.array(cols[f.name]) for f in schema], schema=schema)


def _records(spec: ScaleSpec, e: int, cdf: np.ndarray, r: np.ndarray, dest: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(record index, field type index, value_key) of every pi_values row of records `r`."""
    s = lambda what: _salt(spec, e, what)       # noqa: E731 - a short alias keeps the masks readable
    person = np.minimum(np.searchsorted(cdf, unit(r, s("person"))), len(cdf) - 1).astype(np.uint64)
    kind = unit(r, s("kind"))
    ident, dob_only = kind < 0.72, (kind >= 0.72) & (kind < 0.85)
    addr_only, anon = (kind >= 0.85) & (kind < 0.93), kind >= 0.93
    ok = ALLOWED[dest]                                   # records x types
    rows_r, rows_t, rows_v = [], [], []

    def emit(mask: np.ndarray, field_type: str, value: np.ndarray) -> None:
        mask = mask & ok[:, T[field_type]]
        rows_r.append(np.flatnonzero(mask))
        rows_t.append(np.full(int(mask.sum()), T[field_type], np.int8))
        rows_v.append(_vk(spec, e, field_type, value[mask]))

    took = np.zeros(len(r), bool)
    for field_type, share in ID_SHARE.items():
        has = (unit(person, s("has/" + field_type)) < share) | (field_type == "mobile_cn")
        take = ident & has & (unit(r, s("take/" + field_type)) < 0.55)
        if field_type == "mobile_cn":
            take_mobile = take
        else:
            emit(take, field_type, person)
            took |= take & ok[:, T[field_type]]
    emit(take_mobile | (ident & ~took), "mobile_cn", person)     # at least one identifier: the mobile
    block = person // U64(CHAIN)
    chain = (unit(block, s("chain")) < 0.03) & (person % U64(CHAIN) != U64(CHAIN - 1))
    emit(ident & chain & (unit(r, s("chain/r")) < 0.7), "mobile_cn", person + U64(1))
    hotline = ident & (unit(r, s("hotline")) < 0.01)
    emit(hotline, "mobile_cn", np.full(len(r), 1 << 62, U64))
    names = person % U64(max(1, spec.persons() // 3))
    for field_type, share in EXTRA.items():
        base = ident & (unit(r, s("x/" + field_type)) < share)
        value = {"person_name": names, "date_of_birth": person % U64(25_000)}.get(field_type, person)
        if field_type == "person_name":
            base |= dob_only | addr_only
        elif field_type == "date_of_birth":
            base |= dob_only
        elif field_type == "postal_address":
            base |= addr_only
        emit(base, field_type, value)
    anon_type = (unit(r, s("anon")) * 3).astype(np.int64)
    for i, field_type in enumerate(("landline_cn", "ip_address", "vehicle_plate")):
        emit(anon & (anon_type == i), field_type, r)
    rec = np.concatenate(rows_r)
    order = np.argsort(rec, kind="stable")
    return rec[order], np.concatenate(rows_t)[order], np.concatenate(rows_v)[order]


def make_chunk(spec: ScaleSpec, e: int, c: int, cdf: np.ndarray) -> Chunk:
    """Chunk `c` of enterprise `e`: its flows (in its window of the year), records and what they carry."""
    enterprise = enterprise_ids(spec)[e]
    agent = f"{enterprise}-gw{c % AGENTS}"
    s = lambda what: _salt(spec, e, what)       # noqa: E731
    rc = spec.chunk_records()
    first = c * rc
    r = np.arange(first, min(first + rc, spec.records()), dtype=np.uint64)
    # Records -> PI flows of 1-8 records, cut at the chunk's end.
    sizes = 1 + (mix(r, s("fsize")) % U64(8)).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    starts = starts[starts < len(r)]
    n_pi = len(starts)
    flow_of = np.repeat(np.arange(n_pi), np.diff(np.append(starts, len(r))))
    record_key = np.arange(len(r)) - starts[flow_of]
    n_flows = n_pi + n_pi // 2
    fidx = np.arange(c * 10**6, c * 10**6 + n_flows, dtype=np.uint64)
    w = np.array([1.0 / (1 + i % 17) for i in range(len(DESTINATIONS))])
    dest = np.minimum(np.searchsorted(np.cumsum(w / w.sum()), unit(fidx, s("dest"))), len(DESTINATIONS) - 1)
    rec, ft, vk = _records(spec, e, cdf, r, dest[flow_of])
    flow_ids = _strs(f"{agent}:{c}:", np.arange(n_flows))
    batch = {t: f"{agent}-{t}-{c:06d}" for t in ("flows", "pi_values", "detections", "capture_stats")}
    n = len(rec)
    ftd = pa.DictionaryArray.from_arrays(pa.array(ft), pa.array(TYPES)).cast(pa.string())
    pi = _envelope(n, enterprise, agent, batch["pi_values"]) | {
        "flow_id": flow_ids.take(pa.array(flow_of[rec])), "record_key": pa.array(record_key[rec]),
        "field_type": ftd, "value_key": pa.array(vk), "identifier": pa.array(IDENT[ft]),
        "sensitive": pa.array(SENS[ft]),
        "key_id": pa.array([key_id(enterprise)], pa.string()).take(np.zeros(n, np.int64))}
    tables = {"pi_values": _table("pi_values", pi)}
    tables["flows"] = _flows(spec, e, c, agent, batch["flows"], fidx, flow_ids, dest, n_pi)
    tables["detections"] = _detections(spec, e, enterprise, agent, batch["detections"], flow_of[rec], ft,
                                       flow_ids, fidx[:n_pi])
    tables["capture_stats"] = _capture_stats(spec, c, enterprise, agent, batch["capture_stats"])
    return Chunk(c, agent, tables)


def _window(spec: ScaleSpec, c: int) -> tuple[float, float]:
    start = datetime(spec.year, 1, 1, tzinfo=CST).timestamp()
    length = (datetime(spec.year + 1, 1, 1, tzinfo=CST).timestamp() - start) / spec.chunks()
    return start + c * length, length


def _flows(spec: ScaleSpec, e: int, c: int, agent: str, batch_id: str, fidx: np.ndarray, flow_ids: pa.Array,
           dest: np.ndarray, n_pi: int) -> pa.Table:
    s = lambda what: _salt(spec, e, what)       # noqa: E731
    n = len(fidx)
    lo, length = _window(spec, c)
    ts = np.sort(((lo + unit(fidx, s("ts")) * length) * 1e6).astype(np.int64))
    dur = (unit(fidx, s("dur")) * 30e6).astype(np.int64) + 1000
    pi_flow = np.arange(n) < n_pi
    d = DESTINATIONS
    names = pa.array([x.server_name for x in d], pa.string()).take(pa.array(dest))
    ips = pa.array([x.dst_ip for x in d], pa.string()).take(pa.array(dest))
    countries = pa.array([x.country for x in d], pa.string()).take(pa.array(dest))
    cross = np.array([x.country != "CN" for x in d])[dest]
    bytes_out = (unit(fidx, s("bo")) ** 3 * 2e6).astype(np.int64) + 200
    none = pa.nulls(n, pa.string())
    cols = _envelope(n, enterprise_ids(spec)[e], agent, batch_id) | {
        "flow_id": flow_ids, "ts_start": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "ts_end": pa.array(ts + dur, pa.timestamp("us", tz="UTC")),
        "src_ip": _strs(f"10.{e % 250}.{c % AGENTS}.", (fidx % U64(250)).astype(np.int64) + 1),
        "dst_ip": ips, "src_port": pa.array((40000 + fidx % U64(20000)).astype(np.int32)),
        "dst_port": pa.array(np.full(n, 443, np.int32)), "transport": pa.array(np.full(n, "tcp")),
        "app": pa.array(np.full(n, "tls")), "server_name": names, "dst_country": countries,
        "cross_border": pa.array(cross), "bytes_out": pa.array(bytes_out),
        "bytes_in": pa.array(bytes_out // 3 + 500), "packets_out": pa.array(bytes_out // 1200 + 3),
        "packets_in": pa.array(bytes_out // 3600 + 3), "missed_bytes": pa.array(np.zeros(n, np.int64)),
        "encrypted": pa.array(np.ones(n, bool)), "inspected": pa.array(pi_flow),
        "sample_weight": pa.array(np.ones(n)), "requests": pa.array(np.where(pi_flow, 2, 1).astype(np.int32)),
        "initiator": pa.array(np.full(n, "internal")),
        "visibility": pa.array(np.where(pi_flow, "decrypted", "encrypted")),
        "alpn": pa.array(np.full(n, "h2")),
        "uninspected_reason": pc.if_else(pa.array(pi_flow), none, pa.array(np.full(n, "no_secrets"))),
        "dst_ip_source": pa.array(np.full(n, "wire"))}
    return _table("flows", cols)


def _detections(spec: ScaleSpec, e: int, enterprise: str, agent: str, batch_id: str, flow: np.ndarray,
                ft: np.ndarray, flow_ids: pa.Array, fidx: np.ndarray) -> pa.Table:
    code = flow.astype(np.int64) * 64 + ft
    pairs, counts = np.unique(code, return_counts=True)
    f, t = pairs // 64, (pairs % 64).astype(np.int64)
    important = np.flatnonzero(unit(fidx, _salt(spec, e, "important")) < 0.002)
    f = np.concatenate([f, important])
    t = np.concatenate([t, np.full(len(important), -1)])
    counts = np.concatenate([counts, np.ones(len(important), np.int64)])
    n = len(f)
    names = pa.array([*TYPES, "important_data"], pa.string())
    ti = np.where(t < 0, len(TYPES), t)
    paths = pa.array([f"$.records[*].{x}" for x in (*TYPES, "important_data")], pa.string())
    samples = pa.array([SAMPLES.get(x, "****") for x in (*TYPES, "important_data")], pa.string())
    offsets = pa.array(np.arange(n + 1, dtype=np.int32))
    cols = _envelope(n, enterprise, agent, batch_id) | {
        "flow_id": flow_ids.take(pa.array(f)), "field_type": names.take(pa.array(ti)),
        "sensitive": pa.array(np.append(SENS, False)[ti]),
        "important_subcategory": pc.if_else(pa.array(t < 0), pa.array(np.full(n, "17")),
                                            pa.nulls(n, pa.string())),
        "occurrences": pa.array(counts.astype(np.int64)),
        "key_paths": pa.ListArray.from_arrays(offsets, paths.take(pa.array(ti))),
        "confidence": pa.array(np.full(n, 0.9)),
        "masked_samples": pa.ListArray.from_arrays(offsets, samples.take(pa.array(ti)))}
    return _table("detections", cols)


def _capture_stats(spec: ScaleSpec, c: int, enterprise: str, agent: str, batch_id: str) -> pa.Table:
    lo, length = _window(spec, c)
    hours = max(1, int(length // 3600))
    ts = ((lo + 3600 * np.arange(1, hours + 1)) * 1e6).astype(np.int64)
    z = np.zeros(hours, np.int64)
    cols = _envelope(hours, enterprise, agent, batch_id) | {
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")), "interval_s": pa.array(np.full(hours, 3600.0)),
        "source": pa.array(np.full(hours, "eth1")), "packets_received": pa.array(z + 2_000_000),
        "packets_kernel_dropped": pa.array(z), "packets_undecoded": pa.array(z + 12),
        "flows_active": pa.array(z + 300), "flows_ended": pa.array(z + 5000), "flows_evicted": pa.array(z),
        "spool_rows_dropped": pa.array(z)}
    return _table("capture_stats", cols)


# ---- the whole set ------------------------------------------------------------------------------------

def chunks(spec: ScaleSpec, e: int) -> Iterator[Chunk]:
    cdf = _person_cdf(spec, e)
    for c in range(spec.chunks()):
        yield make_chunk(spec, e, c, cdf)


def generate(spec: ScaleSpec, out: Path) -> dict[str, dict[str, int]]:
    """Write every enterprise's spool under `out/<enterprise_id>/<record_type>/`; rows per enterprise and
    type. Files are written under a temporary name and renamed, so a stopped run leaves whole files."""
    totals: dict[str, dict[str, int]] = {}
    for e, enterprise in enumerate(enterprise_ids(spec)):
        counts = totals.setdefault(enterprise, {})
        for chunk in chunks(spec, e):
            for record_type, table in chunk.tables.items():
                folder = out / enterprise / record_type
                folder.mkdir(parents=True, exist_ok=True)
                name = table.column("batch_id")[0].as_py()
                tmp = folder / f".{name}.tmp"
                pq.write_table(table, tmp, compression="zstd")
                tmp.rename(folder / f"{name}.parquet")
                counts[record_type] = counts.get(record_type, 0) + table.num_rows
    return totals
