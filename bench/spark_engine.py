"""Time one spot check (persons, every check, the report) on DuckDB and on Apache Spark over the same files,
and say whether the two reports are equal (they must be: issue 13 §4).

    python bench/spark_engine.py                      # the demo capture as the agent records it
    python bench/spark_engine.py --copies 300         # ~1.1e5 pi_values rows
    python bench/spark_engine.py --copies 2700        # ~1.0e6 pi_values rows

Data: the real agent's records of fixtures/pcaps/demo.pcap (18 flows, 15 detections, 374 pi_values rows),
replicated `--copies` times in DuckDB: copy k gets its own flow ids, its own persons (value keys shifted
by k·1000003, so persons grow with the copies) and starts k mod 300 days later in the same CST year; files
of at most 100 copies each. Not a zone's year (helper bench/collector_scale.py models that): a timing of
the same checks on both engines, Spark's session start reported apart.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import duckdb
import yaml

from agent.config import load_agent_config
from agent.pipeline import run_capture_stats
from collector.inspection import run_inspection
from collector.models import Filing
from collector.negative_lists import parse_negative_list

log = logging.getLogger("bench.spark_engine")

ROOT = Path(__file__).resolve().parent.parent
_TYPES = ("flows", "detections", "pi_values", "anomalies")
_PER_FILE = 100

# Per record type: the columns a copy changes (the others are copied as they are).
_CHANGED = {
    "flows": "flow_id || '-' || k AS flow_id, ts_start + to_days(CAST(k % 300 AS INTEGER)) AS ts_start, "
             "ts_end + to_days(CAST(k % 300 AS INTEGER)) AS ts_end",
    "detections": "flow_id || '-' || k AS flow_id",
    "pi_values": "flow_id || '-' || k AS flow_id, value_key + k * 1000003 AS value_key",
    "anomalies": "flow_id || '-' || k AS flow_id",
}


def replicate(spool: Path, out: Path, copies: int) -> dict[str, int]:
    """Write `copies` copies of the spool's records under `out/<type>/`; returns rows per type."""
    con = duckdb.connect()
    rows = {}
    for t in _TYPES:
        files = sorted((spool / t).glob("*.parquet"))
        if not files:
            continue
        src = "read_parquet([" + ", ".join(f"'{f}'" for f in files) + "], union_by_name = true)"
        names = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
        changed = {c.split(" AS ")[-1].strip(): c for c in _CHANGED[t].split(", ")}
        select = ", ".join(changed.get(n, n) for n in names)
        (out / t).mkdir(parents=True, exist_ok=True)
        for lo in range(0, copies, _PER_FILE):
            hi = min(copies, lo + _PER_FILE)
            con.execute(f"COPY (SELECT {select} FROM {src}, range({lo}, {hi}) c(k)) TO "
                        f"'{out / t / f'part-{lo:07d}.parquet'}' (FORMAT parquet)")
        rows[t] = con.execute(f"SELECT count(*) FROM read_parquet('{out / t}/*.parquet')").fetchone()[0]
    con.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--spark-master", default="local[2]")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    filing = Filing.model_validate(yaml.safe_load((ROOT / "configs/filings/demo.yaml").read_text()))
    nl_path = ROOT / "configs/negative_lists/zhejiang-example.yaml"
    lists = [parse_negative_list(yaml.safe_load(nl_path.read_text()), nl_path.name)]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        key = tmp / "k.key"
        key.write_bytes(b"bench-key-not-a-secret-000000000")
        run_capture_stats([ROOT / "fixtures/pcaps/demo.pcap"],
                          load_agent_config(None, agent_id="bench", subject_key_file=str(key)), tmp / "spool")
        rows = replicate(tmp / "spool", tmp / "records", args.copies)
        print(f"copies {args.copies}: " + ", ".join(f"{t} {n}" for t, n in rows.items()))
        kwargs = {"negative_lists": lists, "report_id": "bench", "filing_version": 1}
        t0 = time.perf_counter()
        duck = run_inspection(tmp / "records", filing, engine="duckdb", **kwargs)
        t_duck = time.perf_counter() - t0
        from collector.spark_session import spark_session

        t0 = time.perf_counter()
        spark_session(args.spark_master)
        t_session = time.perf_counter() - t0
        timings = []
        for _ in range(2):   # a cold run (JIT, first plans) and a warm one
            t0 = time.perf_counter()
            spark = run_inspection(tmp / "records", filing, engine="spark", period=duck.period,
                                   now=duck.report.generated_at if duck.report else None,
                                   spark_master=args.spark_master, **kwargs)
            timings.append(time.perf_counter() - t0)
    assert duck.report is not None and spark.report is not None
    d, s = duck.report.model_dump(mode="json"), spark.report.model_dump(mode="json")
    d.pop("generated_at"), s.pop("generated_at")
    print(f"persons {duck.persons} / {spark.persons}, findings {len(duck.report.findings)} / "
          f"{len(spark.report.findings)}, reports equal: {d == s}")
    print(f"duckdb {t_duck:.1f} s | spark session {t_session:.1f} s, check cold {timings[0]:.1f} s, "
          f"warm {timings[1]:.1f} s")


if __name__ == "__main__":
    main()
