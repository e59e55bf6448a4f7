"""The SQL of person linking (DESIGN §5), run by persons.build_record_persons one statement at a time.

Written in the statement forms and functions that DuckDB and Spark (through sqlglot) both run the same
way (plan13 interfaces, engineering notes "Spark and sqlglot"): CREATE OR REPLACE TEMP TABLE … AS SELECT,
DROP TABLE IF EXISTS, ALTER TABLE … RENAME TO, plain SELECT; `$name` parameters; no hash(), no list
functions, no casts to text for ordering, no NULL in a sort key (DuckDB sorts NULLs last, Spark first).

A record is (key_id, flow_id, record_key): keys are scoped by the deployment key, so a component never
crosses key_ids. A person key is (key_id, kind, t1, t2, v1, v2): kind 'id' with (field_type, '', value, 0)
for an identifier, 'combo' with (person_name, other type, name, other value) for a record without a kept
identifier. Keys are numbered by their key type's rank (a few rows, sorted as text) and then their values
as numbers: a numeric sort, where casting 10^7 value keys to text took a third of the linking time.
"""

from __future__ import annotations

__all__ = ["COMBINATIONS", "INTERMEDIATE_TABLES", "TEMP_TABLES", "changed_sql", "key_sql", "result_sql",
           "round_sql", "shared_sql"]

# (first, second) field types of the keys that stand for a person when a record holds no identifier.
COMBINATIONS: tuple[tuple[str, str], ...] = (
    ("person_name", "date_of_birth"),
    ("person_name", "postal_address"),
)
COMBINATION_TYPES = tuple(sorted({t for pair in COMBINATIONS for t in pair}))

INTERMEDIATE_TABLES = ("_pl_values", "_pl_ids", "_pl_idrec", "_pl_combos", "_pl_keys", "_pl_types")
TEMP_TABLES = ("_pl_records", "_pl_values", "_pl_ids", "_pl_idrec", "_pl_combos", "_pl_keys", "_pl_types",
               "_pl_edges", "_pl_label", "_pl_next")


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
    types = ", ".join(f"'{t}'" for t in COMBINATION_TYPES)
    pairs = " OR ".join(f"(a.field_type = '{a}' AND b.field_type = '{b}')" for a, b in COMBINATIONS)
    return [
        # One row per record with its flags; rid numbers records for the joins below.
        "CREATE OR REPLACE TEMP TABLE _pl_records AS "
        "SELECT row_number() OVER (ORDER BY key_id, flow_id, record_key) AS rid, key_id, flow_id, "
        "record_key, "
        "max(CASE WHEN sensitive THEN 1 ELSE 0 END) = 1 AS sensitive, "
        "max(CASE WHEN sensitive THEN 0 ELSE 1 END) = 1 AS nonsensitive "
        f"FROM ({pi}) v GROUP BY key_id, flow_id, record_key",
        # The values that can make a key: identifiers, and the combination types.
        "CREATE OR REPLACE TEMP TABLE _pl_values AS "
        "SELECT DISTINCT r.rid, r.key_id, v.field_type, v.value_key, v.identifier "
        f"FROM ({pi}) v JOIN _pl_records r ON r.key_id = v.key_id AND r.flow_id = v.flow_id "
        f"AND r.record_key = v.record_key WHERE v.identifier OR v.field_type IN ({types})",
        # Identifier keys with the number of records carrying each (a shared hotline is not a person).
        "CREATE OR REPLACE TEMP TABLE _pl_ids AS "
        "SELECT rid, key_id, field_type, value_key, "
        "count(*) OVER (PARTITION BY key_id, field_type, value_key) AS n FROM _pl_values WHERE identifier",
        "CREATE OR REPLACE TEMP TABLE _pl_idrec AS SELECT DISTINCT rid FROM _pl_ids WHERE n <= $max_records",
        # Records without a kept identifier: every name with every date of birth / address of the record.
        "CREATE OR REPLACE TEMP TABLE _pl_combos AS "
        "WITH v AS (SELECT x.rid, x.key_id, x.field_type, x.value_key FROM _pl_values x "
        "LEFT JOIN _pl_idrec i ON i.rid = x.rid WHERE i.rid IS NULL), "
        "c AS (SELECT DISTINCT a.rid, a.key_id, a.field_type AS t1, b.field_type AS t2, a.value_key AS v1, "
        f"b.value_key AS v2 FROM v a JOIN v b ON a.rid = b.rid WHERE {pairs}) "
        "SELECT rid, key_id, t1, t2, v1, v2, count(*) OVER (PARTITION BY key_id, t1, t2, v1, v2) AS n FROM c",
        "CREATE OR REPLACE TEMP TABLE _pl_keys AS "
        "SELECT rid, key_id, 'id' AS kind, field_type AS t1, '' AS t2, value_key AS v1, "
        "CAST(0 AS BIGINT) AS v2 FROM _pl_ids WHERE n <= $max_records "
        "UNION ALL SELECT rid, key_id, 'combo' AS kind, t1, t2, v1, v2 FROM _pl_combos "
        "WHERE n <= $max_records",
        "CREATE OR REPLACE TEMP TABLE _pl_types AS "
        "SELECT key_id, kind, t1, t2, dense_rank() OVER (ORDER BY key_id, kind, t1, t2) AS ti "
        "FROM (SELECT DISTINCT key_id, kind, t1, t2 FROM _pl_keys) d",
        "CREATE OR REPLACE TEMP TABLE _pl_edges AS "
        "SELECT k.rid, dense_rank() OVER (ORDER BY t.ti, k.v1, k.v2) AS kid FROM _pl_keys k "
        "JOIN _pl_types t ON t.key_id = k.key_id AND t.kind = k.kind AND t.t1 = k.t1 AND t.t2 = k.t2",
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

# person_id numbers components in the order of their smallest key, as persons.link_records does.
result_sql = """
CREATE OR REPLACE TABLE record_persons AS
WITH rec AS (
    SELECT e.rid, min(l.label) AS label FROM _pl_edges e JOIN _pl_label l ON l.kid = e.kid GROUP BY e.rid
)
SELECT r.flow_id, CAST(r.record_key AS BIGINT) AS record_key,
       CAST(dense_rank() OVER (ORDER BY rec.label) - 1 AS BIGINT) AS person_id, r.sensitive, r.nonsensitive
FROM rec JOIN _pl_records r ON r.rid = rec.rid
ORDER BY r.flow_id, r.record_key
"""

# Keys carried by more than $max_records records: (kind, first type, second type, records), no values.
shared_sql = """
SELECT 'identifier' AS kind, field_type AS t1, '' AS t2, n FROM _pl_ids WHERE n > $max_records
GROUP BY key_id, field_type, value_key, n
UNION ALL
SELECT 'combination' AS kind, t1, t2, n FROM _pl_combos WHERE n > $max_records
GROUP BY key_id, t1, t2, v1, v2, n
"""
