"""The collector at zone scale (issue 13 "Measure"): generate a zone's year of agent records
(bench/scale_data.py has the distribution, bench/scale_filing.py the filing) at each `--sizes` pi_values
rows, then time, per size:

  ingest     every batch POSTed to a real `egress-collector serve` (own config, tokens and data_dir in a
             temporary directory) by `--concurrency` uploaders, as the enterprise's agents would: rows/s of
             all record types, and peak RSS of the service with its decoder workers;
  check      `egress-collector check --filing-id F` (the CLI, after the service stopped: DuckDB allows one
             writing process), all ten checks from the warehouse with the report stored: wall, peak RSS;
  selfcheck  `egress-collector selfcheck --records DIR --filing F` on the enterprise's spool;
  spark      the same check with `--engine spark`, when the CLI has the option (else skipped with a note);
             its findings and observed counts are compared with the DuckDB report's.

    python bench/collector_scale.py                          # 10^6 and 10^7 rows
    python bench/collector_scale.py --sizes 1e6 1e7 1e8 --enterprises 2

Peak RSS: the child's own (os.wait4 ru_maxrss) and the sampled sum over its process tree (/proc), which
counts the decoder workers and a JVM. Generated data is kept in bench/out/collector_scale/data/ (reused when
its spec matches); results in bench/out/collector_scale/results.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # `bench.` beside the checkout's packages

import duckdb
import httpx
import yaml

from bench.scale_data import ScaleSpec, enterprise_ids, generate
from bench.scale_filing import filing_dict, filing_id
from bench.scale_procs import Finished, Tracked, run_measured, tracked
from collector.auth import new_token, token_digest

log = logging.getLogger("bench.collector_scale")

OUT = Path(__file__).resolve().parent / "out" / "collector_scale"
BIN = Path(sys.executable).parent / "egress-collector"
UPLOAD_ORDER = ("flows", "pi_values", "detections", "capture_stats")   # as an agent ships a chunk


def _data(spec: ScaleSpec, root: Path) -> Path:
    """The generated set for `spec`, generated unless a complete one with the same spec is there."""
    folder = root / f"{spec.pi_rows:.0e}-e{spec.enterprises}".replace("+", "")
    marker = folder / "spec.json"
    want = asdict(spec)
    if marker.is_file() and json.loads(marker.read_text()).get("spec") == want:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    rows = generate(spec, folder)
    took = time.perf_counter() - start
    for e in enterprise_ids(spec):
        persons = spec.persons()
        body = filing_dict(e, persons, spec.year)
        (folder / f"{e}.filing.yaml").write_text(yaml.safe_dump(body, allow_unicode=True, sort_keys=False),
                                                 encoding="utf-8")
    marker.write_text(json.dumps({"spec": want, "rows": rows, "generate_s": round(took, 1)}, indent=1))
    log.info("generated %s in %.1f s: %s", folder, took, rows)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(work: Path, spec: ScaleSpec) -> tuple[Path, dict[str, str], str, int]:
    """The service's config: one agent token per (enterprise, agent), one regulator token."""
    from bench.scale_data import AGENTS

    port = _free_port()
    agent_tokens, tokens = {}, []
    for e in enterprise_ids(spec):
        for a in range(AGENTS):
            agent = f"{e}-gw{a}"
            secret = new_token()
            agent_tokens[agent] = secret
            tokens.append({"name": agent, "sha256": token_digest(secret), "role": "agent", "enterprise_id": e,
                           "agent_id": agent})
    regulator = new_token()
    tokens.append({"name": "bench-regulator", "sha256": token_digest(regulator), "role": "regulator",
                   "ftz_area": "hangzhou"})
    cfg = {"data_dir": str(work / "data"), "listen": {"host": "127.0.0.1", "port": port},
           "enterprises": [{"enterprise_id": e, "ftz_area": "hangzhou"} for e in enterprise_ids(spec)],
           "tokens": tokens, "schedule": {"spot_checks": None}}
    path = work / "collector.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path, agent_tokens, regulator, port


def _wait_ready(base: str, alive: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the collector exited during startup (see its log)")
        try:
            if httpx.get(f"{base}/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the collector did not answer /healthz within {timeout} s")


def _batches(data: Path, spec: ScaleSpec, agent_tokens: dict[str, str]) -> list[tuple[str, str, str, Path]]:
    """(token, record type, batch id, file) in shipping order: chunk by chunk, flows first."""
    out = []
    for e in enterprise_ids(spec):
        files = {t: sorted((data / e / t).glob("*.parquet")) for t in UPLOAD_ORDER}
        for group in zip(*(files[t] for t in UPLOAD_ORDER), strict=True):
            for t, path in zip(UPLOAD_ORDER, group, strict=True):
                batch_id = path.stem
                agent = batch_id[: batch_id.index(f"-{t}-")]
                out.append((agent_tokens[agent], t, batch_id, path))
    return out


def _ingest(data: Path, spec: ScaleSpec, work: Path, concurrency: int, profile: Path | None = None
            ) -> tuple[dict[str, Any], Path]:
    cfg, agent_tokens, regulator, port = _config(work, spec)
    base = f"http://127.0.0.1:{port}"
    with tracked([str(BIN), "serve", "--config", str(cfg)], stdout=work / "serve.log") as service:
        _wait_ready(base, service.running)
        for e in enterprise_ids(spec):
            body = (data / f"{e}.filing.yaml").read_bytes()
            r = httpx.put(f"{base}/v1/filings/{filing_id(e, spec.year)}", content=body, timeout=60,
                          headers={"Authorization": f"Bearer {regulator}",
                                   "Content-Type": "application/yaml"})
            r.raise_for_status()
        jobs = _batches(data, spec, agent_tokens)
        local, clients = threading.local(), []

        def upload(job: tuple[str, str, str, Path]) -> tuple[str, int]:
            token, record_type, batch_id, path = job
            if not hasattr(local, "client"):
                local.client = httpx.Client(timeout=600)
                clients.append(local.client)
            client = local.client
            r = client.post(f"{base}/v1/batches", content=path.read_bytes(), headers={
                "Authorization": f"Bearer {token}", "X-Batch-Id": batch_id, "X-Record-Type": record_type,
                "Content-Type": "application/vnd.apache.parquet"})
            if r.status_code not in (200, 201):
                raise RuntimeError(f"batch {batch_id}: {r.status_code} {r.text[:300]}")
            return record_type, int(r.json()["rows"])

        spy = _py_spy(service.proc.pid, profile) if profile else None
        start = time.perf_counter()
        rows: dict[str, int] = {}
        try:
            with ThreadPoolExecutor(concurrency) as pool:
                for record_type, n in pool.map(upload, jobs):
                    rows[record_type] = rows.get(record_type, 0) + n
        finally:
            wall = time.perf_counter() - start
            if spy is not None:
                spy.interrupt()
        for c in clients:
            c.close()
        done = service.stop()
    total = sum(rows.values())
    return {"wall_s": round(wall, 2), "rows": rows, "batches": len(jobs), "rows_per_s": round(total / wall),
            "pi_values_rows_per_s": round(rows.get("pi_values", 0) / wall), "concurrency": concurrency,
            **_rss(done)}, cfg


class _Spy:
    """py-spy recording the service and its decoder workers (collapsed stacks, `--profile`)."""

    def __init__(self, pid: int, out: Path) -> None:
        spy = Path(sys.executable).parent / "py-spy"
        self.t = Tracked([str(spy), "record", "--pid", str(pid), "--subprocesses", "--rate", "50",
                          "--format", "raw", "--output", str(out)], stdout=out.with_suffix(".log"))

    def interrupt(self) -> None:
        os.kill(self.t.proc.pid, signal.SIGINT)       # py-spy writes its output on SIGINT
        self.t.wait(60)


def _py_spy(pid: int, out: Path) -> _Spy | None:
    if not (Path(sys.executable).parent / "py-spy").exists():
        log.warning("--profile: no py-spy beside %s", sys.executable)
        return None
    return _Spy(pid, out)


def _rss(done: Finished) -> dict[str, Any]:
    return {"peak_rss_gb": round(done.maxrss_bytes / 2**30, 2), "tree_peak_rss_gb": round(done.tree_peak_bytes
                                                                                          / 2**30, 2)}


def _timed(argv: list[str], log_path: Path) -> dict[str, Any]:
    done = run_measured(argv, stdout=log_path)
    out = {"wall_s": round(done.wall_s, 2), "exit": done.returncode, **_rss(done)}
    if done.returncode not in (0, 1):      # 1: the check found something, which is the bench's filing's point
        out["error"] = log_path.read_text(errors="replace")[-500:]
        log.warning("%s failed (exit %d): %s", argv[1], done.returncode, out["error"])
    return out


def _has_spark_engine(out: Path) -> bool:
    out.mkdir(parents=True, exist_ok=True)
    done = run_measured([str(BIN), "check", "--help"], stdout=out / "check-help.txt")
    return done.returncode == 0 and "--engine" in (out / "check-help.txt").read_text(errors="replace")


def _latest_reports(cfg: Path, n: int) -> list[dict[str, Any]]:
    data_dir = yaml.safe_load(cfg.read_text())["data_dir"]
    con = duckdb.connect(str(Path(data_dir) / "collector.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT body FROM reports ORDER BY generated_at DESC LIMIT ?", [n]).fetchall()
    finally:
        con.close()
    return [json.loads(r[0]) for r in rows]


def _answer(report: dict[str, Any]) -> dict[str, Any]:
    findings = sorted(json.dumps({k: v for k, v in f.items() if k not in ("evidence", "finding_id")},
                                 sort_keys=True) for f in report.get("findings", []))
    return {"findings": findings, "observed": report.get("observed")}


def run_size(spec: ScaleSpec, args: argparse.Namespace) -> dict[str, Any]:
    data = _data(spec, args.data_root)
    meta = json.loads((data / "spec.json").read_text())
    result: dict[str, Any] = {"pi_values_rows": sum(r["pi_values"] for r in meta["rows"].values()),
                              "rows": meta["rows"], "persons_generated": spec.persons() * spec.enterprises,
                              "generate_s": meta["generate_s"]}
    work = Path(tempfile.mkdtemp(prefix=f"run-{spec.pi_rows:.0e}-", dir=args.out))
    try:
        profile = args.out / f"ingest-{spec.pi_rows:.0e}.collapsed".replace("+", "") if args.profile else None
        result["ingest"], cfg = _ingest(data, spec, work, args.concurrency, profile)
        log.info("ingest: %s", result["ingest"])
        if args.ingest_only:
            return result
        es = enterprise_ids(spec)
        for engine in ("duckdb", "spark"):
            if engine == "spark" and not args.spark_available:
                result["spark"] = {"skipped": "`egress-collector check` has no --engine option"}
                continue
            if engine == "spark" and spec.pi_rows > args.spark_max_rows:
                result["spark"] = {"skipped": f"over --spark-max-rows {args.spark_max_rows:.0e}"}
                continue
            runs = [_timed([str(BIN), "check", "--filing-id", filing_id(e, spec.year), "--config", str(cfg),
                            *(["--engine", "spark"] if engine == "spark" else [])],
                           work / f"check-{engine}-{e}.log") for e in es]
            result["check" if engine == "duckdb" else "spark"] = _merge(runs)
            log.info("%s check: %s", engine, result["check" if engine == "duckdb" else "spark"])
        if "wall_s" in result["spark"] and "error" not in result["spark"]:
            reports = _latest_reports(cfg, 2 * len(es))       # newest first: spark's, then duckdb's
            same = all(_answer(s) == _answer(d) for s, d in zip(reports[:len(es)], reports[len(es):],
                                                                 strict=True))
            result["spark"]["same_answer_as_duckdb"] = same
        runs = [_timed([str(BIN), "selfcheck", "--records", str(data / e), "--filing",
                        str(data / f"{e}.filing.yaml"), "--out", str(work / f"selfcheck-{e}"),
                        "--format", "json"], work / f"selfcheck-{e}.log") for e in es]
        result["selfcheck"] = _merge(runs)
        log.info("selfcheck: %s", result["selfcheck"])
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return result


def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One enterprise's run as is; several: total wall, largest peaks."""
    if len(runs) == 1:
        return runs[0]
    out = {"wall_s": round(sum(r["wall_s"] for r in runs), 2), "exit": max(r["exit"] for r in runs),
           "peak_rss_gb": max(r["peak_rss_gb"] for r in runs),
           "tree_peak_rss_gb": max(r["tree_peak_rss_gb"] for r in runs), "enterprises": len(runs)}
    errors = [r["error"] for r in runs if "error" in r]
    return out | ({"error": errors[0]} if errors else {})


def _table(results: dict[str, dict[str, Any]]) -> str:
    """Wall time and peak RSS (process tree) per step and size; '-' where a step did not run."""
    def cell(step: dict[str, Any] | None, key: str, width: int) -> str:
        value = (step or {}).get(key, "-")
        return f"{value:>{width},}" if isinstance(value, int) else f"{value:>{width}}"

    head = (f"{'pi_values':>11} {'ingest rows/s':>14} {'ingest GB':>9} {'check s':>8} {'check GB':>8} "
            f"{'selfcheck s':>11} {'selfchk GB':>10} {'spark s':>8} {'spark GB':>8}")
    lines = [head]
    for r in results.values():
        steps = [(r.get("ingest"), "rows_per_s", 14), (r.get("ingest"), "tree_peak_rss_gb", 9)]
        for name, width in (("check", 8), ("selfcheck", 11), ("spark", 8)):
            steps += [(r.get(name), "wall_s", width), (r.get(name), "tree_peak_rss_gb", max(8, width - 1))]
        lines.append(f"{r['pi_values_rows']:>11,} " + " ".join(cell(*x) for x in steps))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7],
                        help="pi_values rows per run (over all enterprises)")
    parser.add_argument("--enterprises", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8, help="uploads in flight (2 per agent token)")
    parser.add_argument("--batch-rows", type=int, default=50_000, help="pi_values rows per upload batch")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the service during ingest (collapsed stacks in --out)")
    parser.add_argument("--ingest-only", action="store_true", help="stop after the ingest")
    parser.add_argument("--keep", action="store_true", help="keep each run's data_dir and logs")
    parser.add_argument("--spark-max-rows", type=float, default=1e6,
                        help="run the Spark check only up to this size (10^6: ~6 min on 2 cores)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)     # one line per upload otherwise
    args.out.mkdir(parents=True, exist_ok=True)
    args.data_root = args.out / "data"
    args.spark_available = _has_spark_engine(args.out)
    if not args.spark_available:
        log.info("spark: skipped (`egress-collector check` has no --engine option yet)")
    results = {}
    for size in args.sizes:
        spec = ScaleSpec(int(size), enterprises=args.enterprises, batch_pi_rows=args.batch_rows)
        results[f"{int(size):.0e}".replace("+", "")] = run_size(spec, args)
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(_table(results))
    log.info("results: %s", args.out / "results.json")


if __name__ == "__main__":
    main()
