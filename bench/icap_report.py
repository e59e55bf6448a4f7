"""Figures of bench/icap.py: percentiles per mode and load, added latency, the limit and what saturates,
the table and the JSON rows."""

from __future__ import annotations

import math
import subprocess
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from icap import Round

MIN_ACHIEVED = 0.95            # achieved/offered below this: the load was not carried
CORE_FULL = 0.90               # a single-threaded process at 90 % of a core is saturated
MACHINE_FULL = 0.90            # all processes together at 90 % of every core


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), q in 0..100."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


def squid_codes(access_log: Path) -> dict[str, int]:
    """Squid's own view: result code/HTTP status of every request it logged (native format, field 4)."""
    if not access_log.exists():
        return {}
    codes: Counter[str] = Counter()
    for line in access_log.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) > 3:
            codes[parts[3]] += 1
    return dict(codes)


def version(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (done.stdout.splitlines() or [""])[0]


def _errors(r: Round) -> int:
    return sum(r.load.errors.values())


def round_line(r: Round) -> str:
    lat = r.load.latencies
    ok = "" if r.records_ok is None else (" records ok" if r.records_ok else
                                          f" RECORDS {r.records} expected {r.records_expected}")
    wall = r.load.wall_s or 1.0
    return (f"round {r.repeat} {r.offered:>5g} tx/s icap {r.mode:<3}: "
            f"p50 {_ms(percentile(lat, 50))} ms p99 {_ms(percentile(lat, 99))} ms, "
            f"{(r.load.measured - _errors(r)) / wall:.1f} tx/s, errors {r.load.errors or 0}, "
            f"cpu% {({k: round(100 * v / wall) for k, v in r.cpu_s.items()})}{ok}")


def round_doc(r: Round) -> dict[str, Any]:
    lat = r.load.latencies
    return {"mode": r.mode, "offered": r.offered, "repeat": r.repeat, "sent": r.load.sent,
            "measured": r.load.measured, "wall_s": round(r.load.wall_s, 3),
            "p50_ms": _ms(percentile(lat, 50)), "p90_ms": _ms(percentile(lat, 90)),
            "p99_ms": _ms(percentile(lat, 99)), "max_ms": _ms(max(lat, default=None)),
            "start_lag_p99_ms": _ms(percentile(r.load.start_lag, 99)), "errors": r.load.errors,
            "slowest_at_s_ms": [(round(at, 2), _ms(x)) for at, x in r.load.slowest()],
            "cpu_s": {k: round(v, 3) for k, v in r.cpu_s.items()},
            "cpu_busiest_process_s": {k: round(v, 3) for k, v in r.cpu_max_proc_s.items()},
            "records": None if r.records is None else vars(r.records), "records_expected": r.records_expected,
            "records_ok": r.records_ok, "squid_status": r.squid_status, "agent_exit": r.agent_exit,
            "agent_stop_s": None if r.agent_stop_s is None else round(r.agent_stop_s, 2)}


def _mode(rounds: list[Round]) -> dict[str, Any]:
    lat = [x for r in rounds for x in r.load.latencies]
    wall = sum(r.load.wall_s for r in rounds) or 1.0
    errors: Counter[str] = Counter()
    for r in rounds:
        errors.update(r.load.errors)
    cpu: Counter[str] = Counter()
    for r in rounds:
        cpu.update(r.cpu_s)
    ok = sum(r.load.measured for r in rounds) - sum(errors.values())
    return {"rounds": len(rounds), "requests": len(lat), "achieved_tx_s": round(ok / wall, 1),
            "p50_ms": _ms(percentile(lat, 50)), "p90_ms": _ms(percentile(lat, 90)),
            "p99_ms": _ms(percentile(lat, 99)), "max_ms": _ms(max(lat, default=None)),
            "errors": dict(errors), "start_lag_p99_ms": _ms(percentile([x for r in rounds
                                                                        for x in r.load.start_lag], 99)),
            "cpu_pct": {k: round(100 * v / wall, 1) for k, v in cpu.items()},
            "busiest_process_pct": {k: round(100 * max(r.cpu_max_proc_s.get(k, 0.0) / (r.load.wall_s or 1.0)
                                                       for r in rounds), 1)
                                    for k in rounds[0].cpu_max_proc_s} if rounds else {},
            "records_ok": None if rounds[0].mode == "off" else all(r.records_ok for r in rounds),
            # Seconds the agent took to stop: it inspects its backlog first (detectors behind the load).
            "agent_stop_s_max": max((r.agent_stop_s for r in rounds if r.agent_stop_s is not None),
                                    default=None)}


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 2)


def _saturation(on: dict[str, Any], cpus: int) -> list[str]:
    """What is full at this load, from CPU shares over the measured window."""
    notes = []
    for name, pct in sorted(on["busiest_process_pct"].items(), key=lambda kv: -kv[1]):
        if pct >= CORE_FULL * 100:
            notes.append(f"{name}: one process at {pct:.0f} % of a core")
    cpu = on["cpu_pct"]
    total = cpu.get("machine", 0.0)
    if total >= MACHINE_FULL * 100 * cpus:
        notes.append(f"machine: {total:.0f} % of {cpus * 100} % busy (agent {cpu.get('agent', 0):.0f}: main "
                     f"{cpu.get('agent_main', 0):.0f} + detector workers {cpu.get('agent_workers', 0):.0f}, "
                     f"squid {cpu.get('squid', 0):.0f}, other work {cpu.get('other', 0):.0f})")
    return notes


def summarise(rounds: list[Round], target_ms: float, cpus: int = 2) -> dict[str, Any]:
    loads = sorted({r.offered for r in rounds})
    per_load: list[dict[str, Any]] = []
    for load in loads:
        modes = {m: _mode([r for r in rounds if r.offered == load and r.mode == m]) for m in ("off", "on")}
        repeats = sorted({r.repeat for r in rounds if r.offered == load})
        per_repeat = []
        for rep in repeats:
            lat = {m: [x for r in rounds if r.offered == load and r.mode == m and r.repeat == rep
                       for x in r.load.latencies] for m in ("off", "on")}
            per_repeat.append({"repeat": rep, **{f"added_p{q}_ms": _diff(_ms(percentile(lat["on"], q)),
                                                                         _ms(percentile(lat["off"], q)))
                                                 for q in (50, 99)}})
        added_p50 = _diff(modes["on"]["p50_ms"], modes["off"]["p50_ms"])
        added_p99 = _diff(modes["on"]["p99_ms"], modes["off"]["p99_ms"])
        carried = all(modes[m]["achieved_tx_s"] >= MIN_ACHIEVED * load for m in modes)
        passed = (added_p99 is not None and added_p99 <= target_ms and not modes["on"]["errors"]
                  and not modes["off"]["errors"] and carried and modes["on"]["records_ok"] is True)
        per_load.append({"offered_tx_s": load, "off": modes["off"], "on": modes["on"],
                         "added_p50_ms": added_p50, "added_p99_ms": added_p99, "per_repeat": per_repeat,
                         "pass": passed, "saturation": _saturation(modes["on"], cpus)})
    passing = [float(p["offered_tx_s"]) for p in per_load if p["pass"]]
    first_fail = next((p for p in per_load if not p["pass"]), None)
    return {"target": f"p99 added latency <= {target_ms:g} ms, no errors, >= {MIN_ACHIEVED:.0%} of the "
                      "offered load carried, records complete",
            "added_latency_method": "pooled latencies of all rounds of a mode at a load; added = "
                                    "percentile(on) - percentile(off), per percentile",
            "per_load": per_load, "limit_tx_s": max(passing, default=None),
            "all_below_limit_pass": bool(passing) and all(p["pass"] for p in per_load
                                                          if p["offered_tx_s"] <= max(passing)),
            "first_failing_tx_s": None if first_fail is None else first_fail["offered_tx_s"],
            "saturation_at_first_failing": None if first_fail is None else first_fail["saturation"]}


def table(summary: dict[str, Any]) -> str:
    def cell(v: Any, width: int) -> str:
        return f"{'-' if v is None else v:>{width}}"

    head = (f"{'offered':>8}{'mode':>5}{'tx/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'err':>5}"
            f"{'lag99':>7}{'agent%':>7}{'main%':>6}{'wrk%':>6}{'squid%':>7}{'orig%':>6}{'cli%':>6}"
            f"{'other%':>7}  records")
    lines = [head, "-" * len(head)]
    for p in summary["per_load"]:
        for m in ("off", "on"):
            d = p[m]
            cpu = d["cpu_pct"]
            rec = "" if d["records_ok"] is None else ("ok" if d["records_ok"] else "MISSING")
            lines.append(f"{p['offered_tx_s']:>8g}{m:>5}{cell(d['achieved_tx_s'], 8)}{cell(d['p50_ms'], 8)}"
                         f"{cell(d['p99_ms'], 8)}{cell(d['max_ms'], 8)}{sum(d['errors'].values()):>5}"
                         f"{cell(d['start_lag_p99_ms'], 7)}{cell(cpu.get('agent'), 7)}"
                         f"{cell(cpu.get('agent_main'), 6)}{cell(cpu.get('agent_workers'), 6)}"
                         f"{cell(cpu.get('squid'), 7)}{cell(cpu.get('origin'), 6)}"
                         f"{cell(cpu.get('client'), 6)}{cell(cpu.get('other'), 7)}  {rec}")
        reps = ", ".join(f"{x['added_p99_ms']}" for x in p["per_repeat"])
        stop = p["on"]["agent_stop_s_max"]
        lines.append(f"{'':>8} added p50 {p['added_p50_ms']} ms, p99 {p['added_p99_ms']} ms "
                     f"(p99 per repeat: {reps}); agent stop {stop if stop is None else round(stop, 1)} s "
                     f"{'PASS' if p['pass'] else 'FAIL'}"
                     + (f"; saturated: {'; '.join(p['saturation'])}" if p["saturation"] else ""))
    lines.append(f"limit (highest offered load passing: {summary['target']}): "
                 f"{summary['limit_tx_s']} tx/s; first failing: {summary['first_failing_tx_s']}")
    return "\n".join(lines)
