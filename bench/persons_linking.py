"""Time person linking (DESIGN §5) on about `--rows` pi_values rows: DuckDB (`build_record_persons`) or the
Python reference path it replaced (fetch every row, `link_records`), one mode per process so peak RSS is
that mode's.

    python bench/persons_linking.py --rows 1000000 --mode duckdb
    python bench/persons_linking.py --rows 1000000 --mode python

Data (generated in DuckDB, deterministic): records of three values each. 80 % carry two of their person's
four identifiers (mobile, email, resident ID, passport; which two rotate with the record, so a person's
records link through shared identifiers) plus a name; persons ≈ records / 4. 15 % carry only name + date
of birth (combination keys, persons ≈ those records / 3); 5 % a landline and a name (no person key).
Every 500th person's identifiers also chain to the next person's (components of a few records up to
chains of hundreds are not modelled beyond that: this is a timing of the linking, not of a zone's year).
One deployment key (key_id) for all rows; no period (every record links).

Before issue 13's numeric key numbering (an idle machine): 10^6 rows 1.0 s, 10^7 rows 18.5 s / 2.27 GB.
Side by side on the shared 2-core machine (load average 7-8), linking wall / peak RSS of the process:
    rows    before (text numbering)    after (numbers only, no global sort of keys or persons)
    10^6    1.73 s / 290 MB            1.86 s / 277 MB
    10^7    36.1 s / 2.28 GB           27.7 s / 2.10 GB   (CPU of the process 33.6 s -> 28.2 s)
"""

from __future__ import annotations

import argparse
import logging
import resource
import time

import duckdb

from collector.persons import build_record_persons, link_records

log = logging.getLogger("bench.persons_linking")

_GENERATE = """
CREATE TABLE pi_values AS
WITH r AS (
    SELECT i AS rid, i % 100 AS bucket, hash(i) % {persons} AS person FROM range({records}) t(i)
), ids AS (   -- two identifiers per record, the pair rotating over the person's four
    SELECT rid, person, (rid + j) % 4 AS which FROM r, range(2) s(j) WHERE bucket < 80
)
SELECT 'f' || (rid // 8) AS flow_id, rid % 8 AS record_key,
       ['mobile_cn', 'email', 'resident_id_cn', 'passport_no'][which + 1] AS field_type,
       CASE WHEN person % 500 = 0 AND which = 3 THEN person + 1 ELSE person END * 4 + which AS value_key,
       true AS identifier, which >= 2 AS sensitive, '0a1b2c3d' AS key_id
FROM ids
UNION ALL
SELECT 'f' || (rid // 8), rid % 8, 'person_name', person, false, false, '0a1b2c3d'
FROM r WHERE bucket < 80 OR bucket >= 95
UNION ALL
SELECT 'f' || (rid // 8), rid % 8, 'person_name', person % {combo_persons}, false, false, '0a1b2c3d'
FROM r WHERE bucket >= 80 AND bucket < 95
UNION ALL
SELECT 'f' || (rid // 8), rid % 8, 'date_of_birth', person % {combo_persons}, false, true, '0a1b2c3d'
FROM r WHERE bucket >= 80 AND bucket < 95
UNION ALL
SELECT 'f' || (rid // 8), rid % 8, 'landline_cn', rid, false, false, '0a1b2c3d' FROM r WHERE bucket >= 95
"""


def _python_reference(con: duckdb.DuckDBPyConnection) -> int:
    rows = con.execute(
        "SELECT flow_id, record_key, field_type, value_key, identifier, sensitive FROM pi_values").fetchall()
    return len({r[2] for r in link_records(rows)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--mode", choices=("duckdb", "python"), default="duckdb")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    records = args.rows // 3
    con = duckdb.connect()
    con.execute(_GENERATE.format(records=records, persons=max(records // 4, 1),
                                 combo_persons=max(records * 15 // 100 // 3, 1)))
    (n,) = con.execute("SELECT count(*) FROM pi_values").fetchone() or (0,)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    persons = build_record_persons(con).persons if args.mode == "duckdb" else _python_reference(con)
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log.info("%s: %d pi_values rows, %d persons, %.2f s, peak RSS %.0f MB (%.0f MB after generating)",
             args.mode, n, persons, wall, rss, rss_before)


if __name__ == "__main__":
    main()
