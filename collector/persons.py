"""Counting distinct natural persons (DESIGN §5).

Each record (flow_id, record_key) of `pi_values` yields person keys: its identifier values
(`identifier = true` rows, as (field_type, value_key)), or, when it has none, the combinations
person_name + date_of_birth and person_name + postal_address. Keys seen in the same record belong to one
person; linking them across records (union-find over keys, connected components) means one person seen
once with resident ID + mobile and once with mobile only is counted once.

The result is the table `record_persons(flow_id, record_key, person_id, sensitive, nonsensitive)`:
`sensitive` when the record carried any sensitive PI, `nonsensitive` when it carried any non-sensitive PI.
Counts are exact `count(DISTINCT person_id)` over a scope (enterprise, scenario, destination) of
cross-border flows whose `ts_start` falls in the period: a calendar year in China Standard Time.
Only inspected flows have pi_values, so with sampling the counts are exact lower bounds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import product
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa

from collector.checks.views import use_period

log = logging.getLogger(__name__)

__all__ = ["CST", "PersonCounts", "build_record_persons", "calendar_year", "count_persons", "link_records"]

CST = ZoneInfo("Asia/Shanghai")

# (kind, field types) of the keys that stand for a person when a record holds no identifier.
COMBINATIONS: tuple[tuple[str, str], ...] = (
    ("person_name", "date_of_birth"),
    ("person_name", "postal_address"),
)

Key = tuple[object, ...]
RecordId = tuple[str, int]


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


def _record_keys(values: list[tuple[str, int, bool]]) -> list[Key]:
    """Person keys of one record from its (field_type, value_key, identifier) rows."""
    ids = sorted({("id", ft, vk) for ft, vk, ident in values if ident})
    if ids:
        return list(ids)
    by_type: dict[str, set[int]] = {}
    for ft, vk, _ in values:
        by_type.setdefault(ft, set()).add(vk)
    keys: set[Key] = set()
    for a, b in COMBINATIONS:
        for va, vb in product(sorted(by_type.get(a, ())), sorted(by_type.get(b, ()))):
            keys.add(("combo", a, va, b, vb))
    return sorted(keys, key=repr)


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
            self.parent[max(ra, rb, key=repr)] = min(ra, rb, key=repr)


def link_records(
    rows: list[tuple[str, int, str, int, bool, bool]],
) -> list[tuple[str, int, int, bool, bool]]:
    """(flow_id, record_key, field_type, value_key, identifier, sensitive) rows ->
    (flow_id, record_key, person_id, sensitive, nonsensitive) per record that has a person key.

    person_id numbers components in order of their smallest key, so ids are stable across runs.
    """
    records: dict[RecordId, list[tuple[str, int, bool]]] = {}
    flags: dict[RecordId, list[bool]] = {}
    for flow_id, record_key, field_type, value_key, identifier, sensitive in rows:
        rid = (flow_id, int(record_key))
        records.setdefault(rid, []).append((field_type, int(value_key), bool(identifier)))
        f = flags.setdefault(rid, [False, False])
        f[0 if sensitive else 1] = True
    uf = _UnionFind()
    record_root_key: dict[RecordId, Key] = {}
    for rid, values in records.items():
        keys = _record_keys(values)
        if not keys:
            continue  # e.g. a name alone: not enough to tell people apart
        for k in keys[1:]:
            uf.union(keys[0], k)
        uf.find(keys[0])
        record_root_key[rid] = keys[0]
    roots = sorted({uf.find(k) for k in record_root_key.values()}, key=repr)
    number = {r: i for i, r in enumerate(roots)}
    out = []
    for rid in sorted(record_root_key):
        sens, nonsens = flags[rid]
        out.append((rid[0], rid[1], number[uf.find(record_root_key[rid])], sens, nonsens))
    return out


def build_record_persons(con: duckdb.DuckDBPyConnection) -> int:
    """Create `record_persons` from the `pi_values` view; returns the number of distinct persons."""
    rows = con.execute(
        "SELECT flow_id, record_key, field_type, value_key, identifier, sensitive FROM pi_values"
    ).fetchall()
    linked = link_records(rows)
    table = pa.table({
        "flow_id": pa.array([r[0] for r in linked], pa.string()),
        "record_key": pa.array([r[1] for r in linked], pa.int64()),
        "person_id": pa.array([r[2] for r in linked], pa.int64()),
        "sensitive": pa.array([r[3] for r in linked], pa.bool_()),
        "nonsensitive": pa.array([r[4] for r in linked], pa.bool_()),
    })
    con.execute("DROP TABLE IF EXISTS record_persons")
    con.register("_record_persons", table)
    try:
        con.execute("CREATE TABLE record_persons AS SELECT * FROM _record_persons")
    finally:
        con.unregister("_record_persons")
    persons = len({r[2] for r in linked})
    log.info("%d PI records, %d with person keys, %d distinct persons", len({(r[0], r[1]) for r in rows}),
             len(linked), persons)
    return persons


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
