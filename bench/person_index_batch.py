"""Time one pi_values batch folded into the person index (collector/person_index.py) of a warehouse that
already holds `--rows` pi_values rows: the per-batch cost of the background fold (an upload itself only
queues its rows).

    python bench/person_index_batch.py --rows 10000000 --batch 100000 --data /tmp/wh

The warehouse is real (collector.warehouse.Warehouse); its flow-day index is filled by SQL (flows spread over
300 days of 2026) and the person index by the real `index_batch`, in batches of `--chunk` rows. The data is
persons_linking.py's (records of three values, two of four identifiers per person, name + date of birth
combinations, landlines); the measured batch is new records of new flows whose persons are drawn from all
persons already indexed, so it links into existing components and merges some.
"""

from __future__ import annotations

import argparse
import logging
import resource
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from collector.person_index import index_batch
from collector.warehouse import Warehouse

log = logging.getLogger("bench.person_index_batch")

E, AGENT = "bench-ent", "gw-1"

_ROWS = """
WITH r AS (
    SELECT i AS rid, i % 100 AS bucket, hash(i * 7 + {seed}) % {persons} AS person FROM range({lo}, {hi}) t(i)
), ids AS (
    SELECT rid, person, (rid + j) % 4 AS which FROM r, range(2) s(j) WHERE bucket < 80
)
SELECT 'f' || (rid // 8) AS flow_id, rid % 8 AS record_key,
       ['mobile_cn', 'email', 'resident_id_cn', 'passport_no'][which + 1] AS field_type,
       (CASE WHEN person % 500 = 0 AND which = 3 THEN person + 1 ELSE person END * 4 + which)::BIGINT
           AS value_key, true AS identifier, which >= 2 AS sensitive, '0a1b2c3d' AS key_id
FROM ids
UNION ALL SELECT 'f' || (rid // 8), rid % 8, 'person_name', person, false, false, '0a1b2c3d'
FROM r WHERE bucket >= 80
UNION ALL SELECT 'f' || (rid // 8), rid % 8, 'date_of_birth', person % 1000, false, true, '0a1b2c3d'
FROM r WHERE bucket >= 80 AND bucket < 95
"""


def _rows(gen: duckdb.DuckDBPyConnection, lo: int, hi: int, persons: int, seed: int = 0) -> pa.Table:
    return gen.sql(_ROWS.format(lo=lo, hi=hi, persons=persons, seed=seed)).to_arrow_table()


def _flow_days(wh: Warehouse, records: int) -> None:
    with wh.cursor() as cur:
        cur.execute("INSERT INTO flow_days SELECT ?, ?, md5_number('f' || i), "
                    "DATE '2026-01-05' + CAST(i % 300 AS INTEGER), "
                    "'flows' FROM range(?) t(i)", [E, AGENT, records // 8 + 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    gen = duckdb.connect()
    per_record = 2.0   # rows per record, on average, of the data above
    records = int(args.rows / per_record)
    persons = max(records // 4, 1)
    new = int(args.batch / per_record)
    wh = Warehouse(args.data)
    _flow_days(wh, records + new)
    start, done = time.perf_counter(), 0
    for lo in range(0, records, int(args.chunk / per_record)):
        hi = min(records, lo + int(args.chunk / per_record))
        table = _rows(gen, lo, hi, persons)
        with wh.cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            index_batch(cur, E, AGENT, f"fill{lo}", "pi_values", table, wh.max_records_per_key)
            cur.execute("COMMIT")
        done += table.num_rows
    fill = time.perf_counter() - start
    table = _rows(gen, records, records + new, persons, seed=1)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    with wh.cursor() as cur:
        cur.execute("BEGIN TRANSACTION")
        index_batch(cur, E, AGENT, "measured", "pi_values", table, wh.max_records_per_key)
        cur.execute("COMMIT")
        merges = cur.execute("SELECT count(DISTINCT person) FROM person_merges WHERE batch_id = 'measured'"
                             ).fetchone()
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log.warning("index of %d pi_values rows filled in %.1f s; one batch of %d rows: %.2f s (%.0f rows/s), "
                "%s merged persons, peak RSS %.0f MB (%.0f MB before the batch)", done, fill, table.num_rows,
                wall, table.num_rows / wall, merges[0] if merges else 0, rss, rss_before)
    wh.close()


if __name__ == "__main__":
    main()
