"""The SQL of person linking (DESIGN §5), run by persons.build_record_persons one statement at a time.

Written in the statement forms and functions that DuckDB and Spark (through sqlglot) both run the same
way (plan13 interfaces, engineering notes "Spark and sqlglot"): CREATE OR REPLACE TEMP TABLE … AS SELECT,
DROP TABLE IF EXISTS, ALTER TABLE … RENAME TO, plain SELECT; `$name` parameters; no hash(), no list
functions, no casts to text for ordering, no NULL in a sort key (DuckDB sorts NULLs last, Spark first).

A record is (key_id, flow_id, record_key): keys are scoped by the deployment key, so a component never
crosses key_ids. A person key is an identifier (key_id, field_type, value) or, for a record without a kept
identifier, a combination (key_id, person_name, name, other type, other value). Key types (key_id, field
type) are numbered first (a few rows, sorted as text), so every later step works on numbers only and keys
are numbered by a numeric sort, where casting 10^7 value keys to text took a third of the linking time.
"""

from __future__ import annotations

__all__ = ["COMBINATIONS", "INTERMEDIATE_TABLES", "TEMP_TABLES", "changed_sql", "key_sql", "result_sql",
           "round_sql", "shared_sql"]

# (first, second) field types of the keys that stand for a person when a record holds no identifier.
COMBINATIONS: tuple[tuple[str, str], ...] = (
    ("person_name", "date_of_birth"),
    ("person_name", "postal_address"),
)
# Field types taking part in combinations, in role order (1, 2, …).
_ROLE_TYPES = tuple(sorted({t for pair in COMBINATIONS for t in pair}))
_TYPES = ", ".join(f"'{t}'" for t in _ROLE_TYPES)

INTERMEDIATE_TABLES = ("_pl_values", "_pl_ids", "_pl_idrec", "_pl_combos")
TEMP_TABLES = ("_pl_records", "_pl_values", "_pl_ids", "_pl_idrec", "_pl_combos", "_pl_types", "_pl_edges",
               "_pl_label", "_pl_next")


def _pi(key_id: bool, period: bool) -> str:
    """pi_values of the period with defaults for missing flags and key_id ('' before agents sent it)."""
    kid = "coalesce(p.key_id, '')" if key_id else "''"
    where = (" WHERE p.flow_id IN (SELECT f.flow_id FROM flows f WHERE f.ts_start >= $period_from "
             "AND f.ts_start < $period_to)") if period else ""
    return (f"SELECT p.flow_id, p.record_key, {kid} AS key_id, p.field_type, p.value_key, "
            "coalesce(p.identifier, false) AS identifier, coalesce(p.sensitive, false) AS sensitive "
            f"FROM pi_values p{where}")


def key_sql(key_id: bool, period: bool) -> list[str]:
    """Statements building `_pl_edges(rid, kid)` and the starting labels `_pl_label(kid, label)`; the
    parameter `$max_records` (and `$period_from`, `$period_to` when `period`) is bound by the caller."""
    pi = _pi(key_id, period)
    roles = " ".join(f"WHEN field_type = '{t}' THEN {i}" for i, t in enumerate(_ROLE_TYPES, start=1))
    pairs = " OR ".join(f"(a.role = {_ROLE_TYPES.index(x) + 1} AND b.role = {_ROLE_TYPES.index(y) + 1})"
                        for x, y in COMBINATIONS)
    return [
        # One row per record with its flags; rid numbers records for the joins below (any order will do:
        # person ids come from the keys, so the cheapest sort, on record_key alone, is enough).
        "CREATE OR REPLACE TEMP TABLE _pl_records AS "
        "SELECT row_number() OVER (ORDER BY record_key) AS rid, key_id, flow_id, record_key, "
        "max(CASE WHEN sensitive THEN 1 ELSE 0 END) = 1 AS sensitive, "
        "max(CASE WHEN sensitive THEN 0 ELSE 1 END) = 1 AS nonsensitive "
        f"FROM ({pi}) v GROUP BY key_id, flow_id, record_key",
        # Key types: (key_id, field_type) of the values that can make a key, numbered (few rows); role says
        # which part of a combination a type plays (0: none).
        "CREATE OR REPLACE TEMP TABLE _pl_types AS "
        "SELECT key_id, field_type, dense_rank() OVER (ORDER BY key_id, field_type) AS ti, "
        f"CASE {roles} ELSE 0 END AS role "
        f"FROM (SELECT DISTINCT key_id, field_type FROM ({pi}) v "
        f"WHERE identifier OR field_type IN ({_TYPES})) d",
        # The values that can make a key, as numbers only.
        "CREATE OR REPLACE TEMP TABLE _pl_values AS "
        "SELECT DISTINCT r.rid, t.ti, t.role, v.identifier, v.value_key "
        f"FROM ({pi}) v JOIN _pl_records r ON r.key_id = v.key_id AND r.flow_id = v.flow_id "
        "AND r.record_key = v.record_key "
        "JOIN _pl_types t ON t.key_id = v.key_id AND t.field_type = v.field_type",
        # Identifier keys (ti, value) with the number of records carrying each (a hotline is not a person).
        "CREATE OR REPLACE TEMP TABLE _pl_ids AS "
        "SELECT rid, ti, value_key, count(*) OVER (PARTITION BY ti, value_key) AS n "
        "FROM _pl_values WHERE identifier",
        "CREATE OR REPLACE TEMP TABLE _pl_idrec AS SELECT DISTINCT rid FROM _pl_ids WHERE n <= $max_records",
        # Records without a kept identifier: every name with every date of birth / address of the record.
        "CREATE OR REPLACE TEMP TABLE _pl_combos AS "
        "WITH v AS (SELECT x.rid, x.ti, x.role, x.value_key FROM _pl_values x "
        "LEFT JOIN _pl_idrec i ON i.rid = x.rid WHERE i.rid IS NULL AND x.role > 0), "
        "c AS (SELECT DISTINCT a.rid, a.ti AS ti1, b.ti AS ti2, a.value_key AS v1, b.value_key AS v2 "
        f"FROM v a JOIN v b ON a.rid = b.rid WHERE {pairs}) "
        "SELECT rid, ti1, ti2, v1, v2, count(*) OVER (PARTITION BY ti1, ti2, v1, v2) AS n FROM c",
        # A key is (kt, v1, v2): kt = ti for an identifier, ti1 * 1000000 + ti2 for a combination (types
        # number far fewer than a million). A key's node is the smallest record carrying it: no global sort,
        # and keys sharing that record (so linked anyway) share a node, which leaves components as they are.
        "CREATE OR REPLACE TEMP TABLE _pl_edges AS "
        "SELECT rid, min(rid) OVER (PARTITION BY kt, v1, v2) AS kid FROM ("
        "SELECT rid, CAST(ti AS BIGINT) AS kt, value_key AS v1, CAST(0 AS BIGINT) AS v2 FROM _pl_ids "
        "WHERE n <= $max_records UNION ALL "
        "SELECT rid, CAST(ti1 AS BIGINT) * 1000000 + ti2 AS kt, v1, v2 FROM _pl_combos "
        "WHERE n <= $max_records) k",
        "CREATE OR REPLACE TEMP TABLE _pl_label AS SELECT DISTINCT kid, kid AS label FROM _pl_edges",
    ]


# One round over keys (records are hyperedges): `near` is the smallest label two hops away (key -> record ->
# key); each label's own key (its parent) takes the smallest `near` among its children (hooking, so whole
# trees move at once); then two pointer jumps label <- label(label). Labels only ever name a key of the same
# component and never grow, and a round that changes nothing leaves every component a star on its smallest
# key: O(log n) rounds on long chains where plain propagation takes one round per hop.
round_sql = """
CREATE OR REPLACE TEMP TABLE _pl_next AS
WITH rec AS (
    SELECT e.rid, min(l.label) AS label FROM _pl_edges e JOIN _pl_label l ON l.kid = e.kid GROUP BY e.rid
), near AS (
    SELECT e.kid, min(r.label) AS label FROM _pl_edges e JOIN rec r ON r.rid = e.rid GROUP BY e.kid
), hook AS (
    SELECT l.label AS kid, min(n.label) AS label FROM _pl_label l JOIN near n ON n.kid = l.kid
    GROUP BY l.label
), hooked AS (
    SELECT n.kid, least(n.label, coalesce(h.label, n.label)) AS label
    FROM near n LEFT JOIN hook h ON h.kid = n.kid
), jump AS (
    SELECT a.kid, b.label FROM hooked a JOIN hooked b ON b.kid = a.label
)
SELECT a.kid, b.label FROM jump a JOIN jump b ON b.kid = a.label
"""

changed_sql = "SELECT count(*) FROM _pl_next n JOIN _pl_label l ON l.kid = n.kid WHERE n.label <> l.label"

# person_id is the component's label (a node of it): no sort, ids are the engine's; only the partition into
# persons and the counts are fixed.
result_sql = """
CREATE OR REPLACE TABLE record_persons AS
WITH rec AS (
    SELECT e.rid, min(l.label) AS label FROM _pl_edges e JOIN _pl_label l ON l.kid = e.kid GROUP BY e.rid
)
SELECT r.flow_id, CAST(r.record_key AS BIGINT) AS record_key, CAST(rec.label AS BIGINT) AS person_id,
       r.sensitive, r.nonsensitive
FROM rec JOIN _pl_records r ON r.rid = rec.rid
"""

# Keys carried by more than $max_records records: (kind, first type, second type, records), no values.
shared_sql = """
SELECT 'identifier' AS kind, t.field_type AS t1, '' AS t2, i.n FROM _pl_ids i JOIN _pl_types t ON t.ti = i.ti
WHERE i.n > $max_records GROUP BY i.ti, i.value_key, t.field_type, i.n
UNION ALL
SELECT 'combination' AS kind, a.field_type AS t1, b.field_type AS t2, c.n FROM _pl_combos c
JOIN _pl_types a ON a.ti = c.ti1 JOIN _pl_types b ON b.ti = c.ti2
WHERE c.n > $max_records GROUP BY c.ti1, c.ti2, c.v1, c.v2, a.field_type, b.field_type, c.n
"""
