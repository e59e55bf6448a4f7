"""Linking again only what a batch changed in the person index (person_index.py), with persons.py's rules.

Given the records a batch adds (`_pix_changed(rid)`, already in person_records/person_values) or takes out
(`_pix_gone(rid, person)`, still there), `relink`:
  1. collects the candidate keys of those records (their identifiers, their name combinations) -> T;
  2. recounts the identifier keys of T; those whose side of max_records_per_key changed are "crossed", and
     every record carrying one may change between identifiers and combinations -> SW (with the new records);
  3. recounts the combination keys of T and of SW (records without a kept identifier), crossed ones too;
  4. takes every record carrying a key of T, SW's keys or a crossed key, and every record of their
     persons (and of the persons of records taken out) -> A;
  5. links A over its effective keys (persons.label_components) and writes the new persons.
A is closed: a record outside A shares no effective key with one inside, as every key whose effect changed
is in step 4's set and components were closed before. So the counts equal a full recomputation's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import duckdb

from collector.persons import label_components
from collector.persons_sql import COMBINATIONS

log = logging.getLogger(__name__)

__all__ = ["relink"]

_SCOPE = ("enterprise_id", "key_id", "year")
_PAIRS = " OR ".join(f"(a.field_type = '{a}' AND b.field_type = '{b}')" for a, b in COMBINATIONS)


def _candidates(records: str) -> str:
    """Candidate keys (rid, scope, kind, t1, t2, v1, v2) of the records whose rids `records` selects."""
    return f"""
        SELECT v.rid, v.enterprise_id, v.key_id, v.year, 'id' AS kind, v.field_type AS t1, '' AS t2,
               v.value_key AS v1, CAST(0 AS BIGINT) AS v2
        FROM person_values v WHERE v.identifier AND v.rid IN ({records})
        UNION
        SELECT a.rid, a.enterprise_id, a.key_id, a.year, 'combo', a.field_type, b.field_type, a.value_key,
               b.value_key
        FROM person_values a JOIN person_values b ON b.rid = a.rid
        WHERE a.rid IN ({records}) AND ({_PAIRS})"""


def _match(a: str, b: str, cols: Sequence[str] = ("kind", "t1", "t2", "v1", "v2")) -> str:
    return " AND ".join(f"{a}.{c} = {b}.{c}" for c in (*_SCOPE, *cols))


def _recount(cur: duckdb.DuckDBPyConnection, keys: str, kind: str, max_records: int) -> None:
    """Recount the keys of table `keys` of one kind into person_key_counts; the keys that crossed
    max_records go into `_pr_crossed`."""
    if kind == "id":
        counted = f"""
            SELECT k.enterprise_id, k.key_id, k.year, k.kind, k.t1, k.t2, k.v1, k.v2, count(v.rid) AS n
            FROM (SELECT DISTINCT * FROM {keys} WHERE kind = 'id') k
            LEFT JOIN person_values v ON v.enterprise_id = k.enterprise_id AND v.key_id = k.key_id
                 AND v.year = k.year AND v.identifier AND v.field_type = k.t1 AND v.value_key = k.v1
            GROUP BY ALL"""
    else:
        # Carriers of each combination, then those of them with a kept identifier (counted as ids now).
        cur.execute(f"""
            CREATE OR REPLACE TEMP TABLE _pr_carriers AS
            SELECT k.*, a.rid FROM (SELECT DISTINCT * FROM {keys} WHERE kind = 'combo') k
            JOIN person_values a ON a.enterprise_id = k.enterprise_id AND a.key_id = k.key_id
                 AND a.year = k.year AND a.field_type = k.t1 AND a.value_key = k.v1
            JOIN person_values b ON b.rid = a.rid AND b.field_type = k.t2 AND b.value_key = k.v2""")
        cur.execute(f"""
            CREATE OR REPLACE TEMP TABLE _pr_kept AS
            WITH ids AS (
                SELECT v.* FROM (SELECT DISTINCT rid FROM _pr_carriers) r
                JOIN person_values v ON v.rid = r.rid WHERE v.identifier
            )
            SELECT DISTINCT v.rid FROM ids v
            JOIN person_key_counts c ON c.enterprise_id = v.enterprise_id AND c.key_id = v.key_id
                 AND c.year = v.year AND c.kind = 'id' AND c.t1 = v.field_type AND c.v1 = v.value_key
            WHERE c.records <= {max_records}""")
        counted = f"""
            SELECT k.enterprise_id, k.key_id, k.year, k.kind, k.t1, k.t2, k.v1, k.v2,
                   count(DISTINCT c.rid) AS n
            FROM (SELECT DISTINCT * FROM {keys} WHERE kind = 'combo') k
            LEFT JOIN (SELECT * FROM _pr_carriers WHERE rid NOT IN (SELECT rid FROM _pr_kept)) c
                 ON {_match('c', 'k')}
            GROUP BY ALL"""
    cur.execute(f"CREATE OR REPLACE TEMP TABLE _pr_counted AS {counted}")
    cur.execute(f"""
        INSERT INTO _pr_crossed
        SELECT n.enterprise_id, n.key_id, n.year, n.kind, n.t1, n.t2, n.v1, n.v2 FROM _pr_counted n
        LEFT JOIN person_key_counts c ON {_match('c', 'n')}
        WHERE (coalesce(c.records, 0) > {max_records}) <> (n.n > {max_records})""")
    cur.execute("DELETE FROM person_key_counts c WHERE EXISTS "
                f"(SELECT 1 FROM _pr_counted n WHERE {_match('c', 'n')})")
    cur.execute("INSERT INTO person_key_counts SELECT * FROM _pr_counted WHERE n > 0")


def relink(cur: duckdb.DuckDBPyConnection, batch_id: str, max_records: int, *, removed_persons: Sequence[int],
           now: datetime, removing: bool = False) -> None:
    """See the module docstring; `removing`: `_pix_gone` names records to take out, else `_pix_changed`
    names records just added."""
    source = "SELECT rid FROM _pix_gone" if removing else "SELECT rid FROM _pix_changed"
    cur.execute("CREATE OR REPLACE TEMP TABLE _pr_t AS "
                f"SELECT DISTINCT * EXCLUDE (rid) FROM ({_candidates(source)})")
    if removing:
        cur.execute(f"DELETE FROM person_values WHERE rid IN ({source})")
        cur.execute(f"DELETE FROM person_records WHERE rid IN ({source})")
        cur.execute("CREATE OR REPLACE TEMP TABLE _pr_sw AS SELECT CAST(NULL AS BIGINT) AS rid WHERE false")
    cur.execute("CREATE OR REPLACE TEMP TABLE _pr_crossed AS SELECT * FROM _pr_t WHERE false")
    _recount(cur, "_pr_t", "id", max_records)
    # Records that may switch between identifiers and combinations: new ones, carriers of crossed ids.
    cur.execute(f"""
        CREATE OR REPLACE TEMP TABLE _pr_sw AS
        {'' if removing else 'SELECT rid FROM _pix_changed UNION'}
        SELECT v.rid FROM person_values v JOIN _pr_crossed x ON {_match('v', 'x', ())}
             AND v.identifier AND x.kind = 'id' AND v.field_type = x.t1 AND v.value_key = x.v1""")
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _pr_swkeys AS
        SELECT DISTINCT * EXCLUDE (rid) FROM ({_candidates('SELECT rid FROM _pr_sw')})""")
    cur.execute("CREATE OR REPLACE TEMP TABLE _pr_combo AS "
                "SELECT * FROM _pr_t UNION SELECT * FROM _pr_swkeys")
    _recount(cur, "_pr_combo", "combo", max_records)
    # Every record carrying a key whose effect may have changed, and every record of their persons.
    cur.execute("""CREATE OR REPLACE TEMP TABLE _pr_k AS
        SELECT * FROM _pr_combo UNION SELECT * FROM _pr_crossed""")
    cur.execute(f"""
        CREATE OR REPLACE TEMP TABLE _pr_rk AS
        SELECT v.rid FROM person_values v JOIN _pr_k k ON {_match('v', 'k', ())} AND k.kind = 'id'
             AND v.identifier AND v.field_type = k.t1 AND v.value_key = k.v1
        UNION
        SELECT a.rid FROM person_values a JOIN _pr_k k ON {_match('a', 'k', ())} AND k.kind = 'combo'
             AND a.field_type = k.t1 AND a.value_key = k.v1
        JOIN person_values b ON b.rid = a.rid AND b.field_type = k.t2 AND b.value_key = k.v2
        UNION SELECT rid FROM _pr_sw""")
    persons = ", ".join(str(int(p)) for p in removed_persons) or "NULL"
    cur.execute(f"""
        CREATE OR REPLACE TEMP TABLE _pr_a AS
        SELECT rid FROM person_records WHERE rid IN (SELECT rid FROM _pr_rk)
            OR person IN (SELECT r.person FROM person_records r JOIN _pr_rk k ON k.rid = r.rid)
            OR person IN ({persons})""")
    _link(cur, max_records)
    _write(cur, batch_id, now)
    for t in ("_pr_t", "_pr_sw", "_pr_swkeys", "_pr_combo", "_pr_crossed", "_pr_counted", "_pr_carriers",
              "_pr_kept", "_pr_k", "_pr_rk", "_pr_a", "_pr_np", "_pl_edges", "_pl_label", "_pl_next"):
        cur.execute(f"DROP TABLE IF EXISTS {t}")


def _link(cur: duckdb.DuckDBPyConnection, max_records: int) -> None:
    """Components of A over effective keys: kept identifiers, else combinations under the limit."""
    cur.execute(f"""
        CREATE OR REPLACE TEMP TABLE _pr_eff AS
        WITH cand AS ({_candidates('SELECT rid FROM _pr_a')}),
        counted AS (
            SELECT c.*, k.records FROM cand c JOIN person_key_counts k ON {_match('k', 'c')}
            WHERE k.records <= {max_records}
        ), ids AS (SELECT * FROM counted WHERE kind = 'id')
        SELECT * FROM ids
        UNION ALL
        SELECT * FROM counted WHERE kind = 'combo' AND rid NOT IN (SELECT rid FROM ids)""")
    # A key's node is its smallest record (as in persons_sql.py): no sort over the keys.
    cur.execute("""
        CREATE OR REPLACE TEMP TABLE _pl_edges AS
        SELECT rid, min(rid) OVER (PARTITION BY enterprise_id, key_id, year, kind, t1, t2, v1, v2) AS kid
        FROM _pr_eff""")
    cur.execute("DROP TABLE _pr_eff")
    cur.execute("CREATE OR REPLACE TEMP TABLE _pl_label AS SELECT DISTINCT kid, kid AS label FROM _pl_edges")
    label_components(cur)
    cur.execute("""
        CREATE OR REPLACE TEMP TABLE _pr_np AS
        WITH rec AS (
            SELECT e.rid, min(l.label) AS label FROM _pl_edges e JOIN _pl_label l ON l.kid = e.kid
            GROUP BY e.rid
        )
        SELECT a.rid, min(rec.rid) OVER (PARTITION BY rec.label) AS person
        FROM _pr_a a LEFT JOIN rec ON rec.rid = a.rid""")


def _write(cur: duckdb.DuckDBPyConnection, batch_id: str, now: datetime) -> None:
    """New persons of A; a person made of two or more earlier ones is a merge this batch caused."""
    cur.execute("""
        INSERT INTO person_merges
        WITH olds AS (
            SELECT DISTINCT r.enterprise_id, r.key_id, r.year, n.person, r.person AS merged
            FROM _pr_np n JOIN person_records r ON r.rid = n.rid
            WHERE n.person IS NOT NULL AND r.person IS NOT NULL
        )
        SELECT enterprise_id, key_id, year, ?, ?, person, merged FROM olds
        WHERE person IN (SELECT person FROM olds GROUP BY person HAVING count(*) > 1)""", [batch_id, now])
    cur.execute("UPDATE person_records SET person = n.person FROM _pr_np n WHERE person_records.rid = n.rid "
                "AND person_records.person IS DISTINCT FROM n.person")
