"""Counting distinct natural persons (DESIGN §5).

Each record (flow_id, record_key) of `pi_values` yields person keys: its identifier values
(`identifier = true` rows, as (field_type, value_key)), or, when it has none, the combinations
person_name + date_of_birth and person_name + postal_address. Keys seen in the same record belong to one
person; linking them across records (connected components) means one person seen once with resident ID +
mobile and once with mobile only is counted once. `build_record_persons` computes the components inside
DuckDB (set operations, nothing fetched into Python; the SQL is persons_sql.py); `link_records` is the plain
union-find reference the tests compare it with.

Keys are scoped by the deployment key (`key_id`): persons of agents with different keys are never joined.
Only records of flows starting in the checked period link. A key carried by more than
`persons.max_records_per_key` records (a hotline, a placeholder ID) does not link and is reported; a record
whose identifiers are all dropped so falls back to its name combinations.

The result is the table `record_persons(flow_id, record_key, person_id, sensitive, nonsensitive)`:
`sensitive` when the record carried any sensitive PI, `nonsensitive` when it carried any non-sensitive PI.
Counts are exact `count(DISTINCT person_id)` over a scope (enterprise, scenario, destination) of
cross-border flows whose `ts_start` falls in the period: a calendar year in China Standard Time.
Only inspected flows have pi_values, so with sampling the counts are exact lower bounds.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import product
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from collector.checks.views import use_period
from collector.persons_sql import (
    COMBINATIONS,
    INTERMEDIATE_TABLES,
    TEMP_TABLES,
    changed_sql,
    key_sql,
    result_sql,
    round_sql,
    shared_sql,
)

log = logging.getLogger(__name__)

__all__ = ["CST", "DEFAULT_MAX_RECORDS_PER_KEY", "Linking", "PersonCounts", "SharedKey",
           "build_record_persons", "calendar_year", "count_persons", "label_components", "link_records",
           "reference_linking"]

CST = ZoneInfo("Asia/Shanghai")
DEFAULT_MAX_RECORDS_PER_KEY = 1000   # persons.max_records_per_key (DESIGN §5)

Key = tuple[str, str, str, str, int, int]   # (key_id, kind, t1, t2, v1, v2)
RecordId = tuple[str, str, int]   # (key_id, flow_id, record_key)


@dataclass(frozen=True, slots=True)
class PersonCounts:
    persons_nonsensitive: int
    persons_sensitive: int


def calendar_year(year: int) -> tuple[datetime, datetime]:
    """[1 January 00:00 CST of `year`, 1 January of the next year) as aware datetimes (to is exclusive)."""
    return datetime(year, 1, 1, tzinfo=CST), datetime(year + 1, 1, 1, tzinfo=CST)


def year_of(ts: datetime) -> int:
    """The calendar year in China Standard Time of an instant."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(CST).year


@dataclass(frozen=True, slots=True)
class SharedKey:
    """A person key carried by more than `max_records_per_key` records: it does not link (DESIGN §5).
    `kind` identifier | combination, `field_types` e.g. "mobile_cn" or "person_name+date_of_birth"."""
    kind: str
    field_types: str
    records: int


@dataclass(frozen=True, slots=True)
class Linking:
    persons: int                          # distinct persons (components)
    records: int                          # records with a person key (rows of record_persons)
    key_ids: tuple[str, ...]              # deployment keys of the period's records ('' = not sent)
    shared_keys: tuple[SharedKey, ...]    # over-shared keys, most records first


def _shared_order(k: SharedKey) -> tuple[int, str, str]:
    return -k.records, k.kind, k.field_types


def reference_linking(
    rows: Iterable[Sequence[Any]], *, flows: Collection[str] | None = None,
    max_records_per_key: int = DEFAULT_MAX_RECORDS_PER_KEY,
) -> tuple[list[tuple[str, int, int, bool, bool]], Linking]:
    """The plain Python statement of the rules `build_record_persons` implements in SQL (for the tests).

    rows: (flow_id, record_key, field_type, value_key, identifier, sensitive[, key_id]); `flows`: the flow
    ids in the period (None: every row). Returns the record_persons rows and the Linking.
    """
    records: dict[RecordId, list[tuple[str, int, bool]]] = {}
    flags: dict[RecordId, list[bool]] = {}
    for row in rows:
        flow_id, record_key, field_type, value_key, identifier, sensitive = row[:6]
        if flows is not None and flow_id not in flows:
            continue
        key_id = (row[6] if len(row) > 6 else None) or ""
        rid = (str(key_id), str(flow_id), int(record_key))
        records.setdefault(rid, []).append((field_type, int(value_key), bool(identifier)))
        f = flags.setdefault(rid, [False, False])
        f[0 if sensitive else 1] = True
    ids = {rid: {(rid[0], "id", ft, "", vk, 0) for ft, vk, ident in values if ident}
           for rid, values in records.items()}
    over = _over_shared(ids, max_records_per_key)
    keys = {rid: k - over.keys() for rid, k in ids.items()}
    combos = {rid: _combinations(rid[0], records[rid]) for rid, k in keys.items() if not k}
    over_combos = _over_shared(combos, max_records_per_key)
    for rid, k in combos.items():
        keys[rid] = k - over_combos.keys()
    uf = _UnionFind()
    record_root_key: dict[RecordId, Key] = {}
    for rid, record_keys in keys.items():
        if not record_keys:
            continue  # e.g. a name alone: not enough to tell people apart
        first, *rest = sorted(record_keys)
        for other in rest:
            uf.union(first, other)
        record_root_key[rid] = first
    roots = sorted({uf.find(k) for k in record_root_key.values()})
    number = {r: i for i, r in enumerate(roots)}
    out = []
    for rid in sorted(record_root_key, key=lambda r: (r[1], r[2], r[0])):
        sens, nonsens = flags[rid]
        out.append((rid[1], rid[2], number[uf.find(record_root_key[rid])], sens, nonsens))
    shared = [SharedKey("identifier", k[2], n) for k, n in over.items()]
    shared += [SharedKey("combination", f"{k[2]}+{k[3]}", n) for k, n in over_combos.items()]
    linking = Linking(len(roots), len(out), tuple(sorted({rid[0] for rid in records})),
                      tuple(sorted(shared, key=_shared_order)))
    return out, linking


def _combinations(key_id: str, values: list[tuple[str, int, bool]]) -> set[Key]:
    by_type: dict[str, set[int]] = {}
    for ft, vk, _ in values:
        by_type.setdefault(ft, set()).add(vk)
    return {(key_id, "combo", a, b, va, vb)
            for a, b in COMBINATIONS for va, vb in product(by_type.get(a, ()), by_type.get(b, ()))}


def _over_shared(keys: dict[RecordId, set[Key]], limit: int) -> dict[Key, int]:
    """Keys carried by more than `limit` records, with their number of records."""
    counts = Counter(k for ks in keys.values() for k in ks)
    return {k: n for k, n in counts.items() if n > limit}


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[Key, Key] = {}

    def find(self, k: Key) -> Key:
        parent = self.parent.setdefault(k, k)
        root = k
        while parent != root:
            root, parent = parent, self.parent[parent]
        while k != root:  # path compression keeps later finds O(1)-ish on long chains
            self.parent[k], k = root, self.parent[k]
        return root

    def union(self, a: Key, b: Key) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def link_records(
    rows: Iterable[Sequence[Any]], *, flows: Collection[str] | None = None,
    max_records_per_key: int = DEFAULT_MAX_RECORDS_PER_KEY,
) -> list[tuple[str, int, int, bool, bool]]:
    """(flow_id, record_key, field_type, value_key, identifier, sensitive[, key_id]) rows ->
    (flow_id, record_key, person_id, sensitive, nonsensitive) per record that has a person key.

    person_id numbers components in order of their smallest key (key_id, kind, types, then values as
    numbers), so ids are stable across runs; `build_record_persons` numbers them its own way (compare the
    partition into persons, never the ids).
    """
    return reference_linking(rows, flows=flows, max_records_per_key=max_records_per_key)[0]


def build_record_persons(
    con: duckdb.DuckDBPyConnection, period: tuple[datetime, datetime] | None = None, *,
    max_records_per_key: int = DEFAULT_MAX_RECORDS_PER_KEY,
) -> Linking:
    """Create `record_persons` from the `pi_values` view (and `flows`, for a period): the same rows and
    persons as `link_records`, computed inside the engine by connected components of the (record, person
    key) graph — min-label propagation with hooking and pointer jumping.

    Only records of flows whose ts_start is in `period` (half-open; None: all) link and count; keys carried
    by more than `max_records_per_key` of those records do not link.
    """
    names = {d[0] for d in con.execute("SELECT * FROM pi_values LIMIT 0").description}
    params: dict[str, Any] = {"max_records": max_records_per_key}
    if period is not None:
        params |= {"period_from": period[0], "period_to": period[1]}
    rounds = 0
    try:
        for sql in key_sql("key_id" in names, period is not None):
            con.execute(sql, _used(sql, params))
        key_ids = tuple(r[0] for r in con.execute(
            "SELECT DISTINCT key_id FROM _pl_records ORDER BY key_id").fetchall())
        shared = tuple(sorted((SharedKey(kind, f"{t1}+{t2}" if t2 else t1, int(n)) for kind, t1, t2, n
                               in con.execute(shared_sql, {"max_records": max_records_per_key}).fetchall()),
                              key=_shared_order))
        for table in INTERMEDIATE_TABLES:   # only edges, labels and records are needed from here on
            con.execute(f"DROP TABLE IF EXISTS {table}")
        rounds = label_components(con)
        con.execute(result_sql)
        linked, persons = con.execute(
            "SELECT count(*), count(DISTINCT person_id) FROM record_persons").fetchone() or (0, 0)
    finally:
        for table in TEMP_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {table}")
    log.info("%d records with person keys, %d distinct persons (%d linking rounds, %d over-shared keys)",
             linked, persons, rounds, len(shared))
    return Linking(int(persons), int(linked), key_ids, shared)


def label_components(con: duckdb.DuckDBPyConnection) -> int:
    """Label every key of `_pl_edges(rid, kid)` with the smallest key of its component: `_pl_label(kid,
    label)` starts as kid = label and ends as stars. Returns the number of rounds."""
    rounds = 0
    while True:
        rounds += 1
        con.execute(round_sql)
        changed = con.execute(changed_sql).fetchone()
        con.execute("DROP TABLE _pl_label")
        con.execute("ALTER TABLE _pl_next RENAME TO _pl_label")
        if not changed or changed[0] == 0:
            return rounds


def _used(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    # DuckDB refuses parameters a statement does not name.
    return {k: v for k, v in params.items() if f"${k}" in sql}


# Scope of the counts: the period's cross-border flows (views.sql period_flows); a scope narrows further.
_COUNT_SQL = """
SELECT {group_cols}
       count(DISTINCT rp.person_id) FILTER (WHERE rp.nonsensitive) AS persons_nonsensitive,
       count(DISTINCT rp.person_id) FILTER (WHERE rp.sensitive) AS persons_sensitive
FROM record_persons rp
JOIN period_flows f ON f.flow_id = rp.flow_id
{join}
{group_by}
"""

_SCOPES = {
    "enterprise": ("", "", ""),
    "scenario": ("fr.scenario_id AS scope,",
                 "JOIN (SELECT DISTINCT flow_id, scenario_id FROM flow_recipients "
                 "WHERE scenario_id IS NOT NULL) fr ON fr.flow_id = f.flow_id",
                 "GROUP BY fr.scenario_id"),
    "destination": ("f.destination AS scope,", "", "GROUP BY f.destination"),
}


def count_persons(
    con: duckdb.DuckDBPyConnection, period: tuple[datetime, datetime], by: str = "enterprise"
) -> dict[str | None, PersonCounts]:
    """Distinct persons per scope (`enterprise` -> key None, `scenario`, `destination`) in the period."""
    group_cols, join, group_by = _SCOPES[by]
    sql = _COUNT_SQL.format(group_cols=group_cols, join=join, group_by=group_by)
    use_period(con, period)
    rows = con.execute(sql).fetchall()
    if by == "enterprise":
        n, s = rows[0]
        return {None: PersonCounts(n, s)}
    return {r[0]: PersonCounts(r[1], r[2]) for r in rows}
