"""Where the time of one uploaded batch goes, in process (no HTTP): `ingest.parse_batch` (decode in the
batchread worker, schema and column checks, row keys) and `Warehouse.store_batch` (dedup, Parquet file,
quota, row keys), for a pi_values, flows and detections batch of bench/scale_data.py's zone year.

    python bench/ingest_batch.py [--batch-rows 100000] [--repeat 7] [--stored 20]

`--stored` batches of each type are stored first, so store_batch meets a warehouse that already holds
rows (its dedup and quota queries grow with them). Prints the best of `--repeat` per step and the rows/s
one thread reaches; the service runs parse steps concurrently and store_batch one at a time.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # `bench.` beside the checkout's packages

import pyarrow.parquet as pq

from bench.scale_data import ScaleSpec, _person_cdf, make_chunk
from collector import batchread, ingest
from collector.config import Limits
from collector.warehouse import Warehouse

log = logging.getLogger("bench.ingest_batch")

TYPES = ("pi_values", "flows", "detections")


def _body(table: object) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")     # as agent/spool.py writes a batch
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-rows", type=int, default=100_000, help="pi_values rows per batch")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--stored", type=int, default=20, help="batches stored before timing")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("collector").setLevel(logging.WARNING)
    spec = ScaleSpec(10**8, batch_pi_rows=args.batch_rows)
    cdf = _person_cdf(spec, 0)
    limits = Limits()
    best: dict[tuple[str, str], float] = {}
    rows: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = Warehouse(Path(tmp))
        try:
            for c in range(args.stored + args.repeat):
                chunk = make_chunk(spec, 0, c, cdf)
                for t in TYPES:
                    body = _body(chunk.tables[t])
                    start = time.perf_counter()
                    batch = ingest.parse_batch(body, f"c{c}-{t}", t, "bench-e0", chunk.agent_id,
                                               limits=limits)
                    parsed = time.perf_counter()
                    warehouse.store_batch(batch, "bench", quota=limits.max_enterprise_bytes)
                    stored = time.perf_counter()
                    if c >= args.stored:
                        rows[t] = batch.table.num_rows
                        for step, took in (("parse", parsed - start), ("store", stored - parsed),
                                           ("both", stored - start)):
                            best[t, step] = min(best.get((t, step), float("inf")), took)
        finally:
            warehouse.close()
            batchread.shutdown()
    for t in TYPES:
        log.info("%-11s %7d rows  parse %6.1f ms (%s rows/s)  store %6.1f ms (%s rows/s)  both %s rows/s",
                 t, rows[t], 1e3 * best[t, "parse"], f"{rows[t] / best[t, 'parse']:,.0f}",
                 1e3 * best[t, "store"], f"{rows[t] / best[t, 'store']:,.0f}",
                 f"{rows[t] / best[t, 'both']:,.0f}")


if __name__ == "__main__":
    main()
