"""Counting distinct natural persons (DESIGN §5).

Each record (flow_id, record_key) of `pi_values` yields person keys: its identifier values
(`identifier = true` rows, as (field_type, value_key)), or, when it has none, the combinations
person_name + date_of_birth and person_name + postal_address. Keys seen in the same record belong to one
person; linking them across records (connected components) means one person seen once with resident ID +
mobile and once with mobile only is counted once. `build_record_persons` computes the components inside
DuckDB (set operations, nothing fetched into Python); `link_records` is the plain union-find reference the
tests compare it with.

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


# Person keys as rows (kind, t1, v1, t2, v2): ('id', field_type, value_key, NULL, NULL) for an identifier,
# ('combo', 'person_name', name, other type, other value) for a record without identifier (COMBINATIONS,
# every pair of values, as `_record_keys`). `kid` numbers keys in the order of the reference's repr(key):
# 'combo' before 'id', then types and values as text ("10" < "9") — so a component's smallest key, and with
# it person_id, is the one `link_records` gives (exactly repr order for field types whose characters all
# sort after "'", as every catalog id does; other types still partition the same, only ids may differ).
_KEYS_SQL = """
CREATE OR REPLACE TEMP TABLE _pl_records AS
SELECT row_number() OVER (ORDER BY flow_id, record_key) AS rid, flow_id, record_key,
       bool_or(coalesce(sensitive, false)) AS sensitive,
       bool_or(NOT coalesce(sensitive, false)) AS nonsensitive,
       bool_or(coalesce(identifier, false)) AS has_identifier
FROM pi_values GROUP BY flow_id, record_key;

CREATE OR REPLACE TEMP TABLE _pl_values AS
SELECT DISTINCT r.rid, r.has_identifier, p.field_type, p.value_key
FROM pi_values p JOIN _pl_records r ON r.flow_id = p.flow_id AND r.record_key = p.record_key
WHERE coalesce(p.identifier, false) OR NOT r.has_identifier;

CREATE OR REPLACE TEMP TABLE _pl_edges AS
WITH record_keys AS (
    SELECT rid, 'id' AS kind, field_type AS t1, value_key AS v1, NULL::VARCHAR AS t2, NULL::BIGINT AS v2
    FROM _pl_values WHERE has_identifier
    UNION ALL
    SELECT a.rid, 'combo', a.field_type, a.value_key, b.field_type, b.value_key
    FROM _pl_values a JOIN _pl_values b ON a.rid = b.rid
    WHERE NOT a.has_identifier AND {combinations}
)
SELECT DISTINCT rid, dense_rank() OVER (ORDER BY kind, t1, v1::VARCHAR, t2, v2::VARCHAR) AS kid
FROM record_keys;

CREATE OR REPLACE TEMP TABLE _pl_label AS SELECT DISTINCT kid, kid AS label FROM _pl_edges;
"""

# One round over keys (records are hyperedges): `near` is the smallest label two hops away (key -> record ->
# key); each label's own key (its parent) takes the smallest `near` among its children (hooking, so whole
# trees move at once); then two pointer jumps label <- label(label). Labels only ever name a key of the same
# component and never grow, and a round that changes nothing leaves every component a star on its smallest
# key: O(log n) rounds on long chains where plain propagation takes one round per hop.
_ROUND_SQL = """
CREATE OR REPLACE TEMP TABLE _pl_next AS
WITH rec AS (
    SELECT e.rid, min(l.label) AS label FROM _pl_edges e JOIN _pl_label l USING (kid) GROUP BY e.rid
), near AS (
    SELECT e.kid, min(r.label) AS label FROM _pl_edges e JOIN rec r USING (rid) GROUP BY e.kid
), hook AS (
    SELECT l.label AS kid, min(n.label) AS label FROM _pl_label l JOIN near n USING (kid) GROUP BY l.label
), hooked AS (
    SELECT n.kid, least(n.label, coalesce(h.label, n.label)) AS label
    FROM near n LEFT JOIN hook h USING (kid)
), jump AS (
    SELECT a.kid, b.label FROM hooked a JOIN hooked b ON b.kid = a.label
)
SELECT a.kid, b.label FROM jump a JOIN jump b ON b.kid = a.label;
"""

_CHANGED_SQL = "SELECT count(*) FROM _pl_next n JOIN _pl_label l USING (kid) WHERE n.label <> l.label"

_RESULT_SQL = """
CREATE OR REPLACE TABLE record_persons AS
WITH rec AS (
    SELECT e.rid, min(l.label) AS label FROM _pl_edges e JOIN _pl_label l USING (kid) GROUP BY e.rid
)
SELECT r.flow_id, r.record_key::BIGINT AS record_key,
       (dense_rank() OVER (ORDER BY rec.label) - 1)::BIGINT AS person_id, r.sensitive, r.nonsensitive
FROM rec JOIN _pl_records r USING (rid)
ORDER BY r.flow_id, r.record_key;
"""

_TEMP_TABLES = ("_pl_records", "_pl_values", "_pl_edges", "_pl_label", "_pl_next")


def build_record_persons(con: duckdb.DuckDBPyConnection) -> int:
    """Create `record_persons` from the `pi_values` view; returns the number of distinct persons.

    Same rows and persons as `link_records`, computed inside DuckDB: connected components of the
    (record, person key) graph by min-label propagation with hooking and pointer jumping.
    """
    combinations = " OR ".join(
        f"(a.field_type = '{a}' AND b.field_type = '{b}')" for a, b in COMBINATIONS)
    try:
        con.execute(_KEYS_SQL.format(combinations=combinations))
        rounds = 0
        while True:
            rounds += 1
            con.execute(_ROUND_SQL)
            changed = con.execute(_CHANGED_SQL).fetchone()
            con.execute("DROP TABLE _pl_label; ALTER TABLE _pl_next RENAME TO _pl_label")
            if not changed or changed[0] == 0:
                break
        con.execute(_RESULT_SQL)
        records = con.execute("SELECT count(*) FROM _pl_records").fetchone()
        linked, persons = con.execute(
            "SELECT count(*), count(DISTINCT person_id) FROM record_persons").fetchone() or (0, 0)
    finally:
        for table in _TEMP_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {table}")
    log.info("%d PI records, %d with person keys, %d distinct persons (%d linking rounds)",
             records[0] if records else 0, linked, persons, rounds)
    return int(persons)


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
