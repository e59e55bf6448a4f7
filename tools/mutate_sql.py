"""Mutation testing for the SQL checks (issue 10 §3b): plant one small bug at a time in a check file, run the
tests that judge that check, and list the bugs no test noticed (survivors).

mutmut mutates Python only; the checks' logic is SQL, so this mutator works on sqlglot's syntax tree of
each `collector/checks/*.sql` file (the shared views.sql and evidence.sql included; a check's statements,
its `hits` temp view and its final SELECT, are mutated alike). Operators:

    comparison   > <-> >=, < <-> <=, = <-> <>        (boundaries: "at the declared scale" cases)
    predicate    drop one side of an AND in a WHERE or join condition, or a whole single-predicate WHERE
    distinct     remove SELECT DISTINCT or count(DISTINCT …)
    constant     a number n -> n + 1 (array_slice bounds are evidence list lengths, not verdicts: skipped)

Each mutant is the file's header comment + the mutated trees printed by sqlglot (DuckDB dialect), each
statement ending with a semicolon at the end of a line as the runner splits them. The
original round-trips through the same printer first and must pass its tests, so a mutant is killed by its
bug, not by the printer. The file is restored after every mutant, also on Ctrl-C or an error.

    python tools/mutate_sql.py                       # every check file
    python tools/mutate_sql.py scale_exceeded views  # some
    python tools/mutate_sql.py --list scale_exceeded # print the mutants, run nothing
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlglot
from sqlglot import exp

log = logging.getLogger("mutate_sql")

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ROOT / "collector" / "checks"
# Every check test file (a new tests/collector/test_checks_*.py joins without an edit here); `-k CHECK`
# then picks the tests named after the mutated check.
CHECK_TESTS = tuple(sorted(str(p.relative_to(ROOT))
                           for p in (ROOT / "tests" / "collector").glob("test_checks*.py")))
SHARED = ("views", "evidence")  # the files every check reads, not checks of their own
FLIPS: dict[type[exp.Expr], type[exp.Expr]] = {
    exp.GT: exp.GTE, exp.GTE: exp.GT, exp.LT: exp.LTE, exp.LTE: exp.LT, exp.EQ: exp.NEQ, exp.NEQ: exp.EQ,
}


@dataclass(frozen=True, slots=True)
class Mutant:
    file: str        # check id (file stem)
    number: int      # 1-based within the file
    operator: str    # comparison | predicate | distinct | constant
    description: str
    sql: str         # the whole mutated file


def split_header(text: str) -> tuple[str, str]:
    """(leading `--` comment lines, the SQL after them)."""
    lines = text.splitlines(keepends=True)
    n = 0
    while n < len(lines) and lines[n].startswith("--"):
        n += 1
    return "".join(lines[:n]), "".join(lines[n:])


def _parse(body: str) -> list[exp.Expr]:
    return [t for t in sqlglot.parse(body, read="duckdb") if t is not None]


def _print(trees: Sequence[exp.Expr]) -> str:
    return "".join(t.sql(dialect="duckdb", pretty=True) + ";\n" for t in trees)


def _short(node: exp.Expr) -> str:
    s = " ".join(node.sql(dialect="duckdb").split())
    return s if len(s) <= 90 else s[:89] + "…"


# An edit finds its node in a fresh copy of the trees by position in a walk, so each mutant starts clean.
Edit = Callable[[exp.Expr], tuple[str, str] | None]


def _comparison(node: exp.Expr) -> tuple[str, str] | None:
    flip = FLIPS.get(type(node))
    if flip is None:
        return None
    before = _short(node)
    node.replace(flip(this=node.this, expression=node.expression))
    return "comparison", f"{before}  ->  {_short(flip(this=node.this, expression=node.expression))}"


def _in_condition(node: exp.Expr) -> bool:
    parent = node.parent
    while isinstance(parent, exp.And | exp.Paren):
        parent = parent.parent
    return isinstance(parent, exp.Where | exp.Join)


def _drop(side: str) -> Edit:
    def edit(node: exp.Expr) -> tuple[str, str] | None:
        if not isinstance(node, exp.And) or not _in_condition(node):
            return None
        dropped, kept = (node.left, node.right) if side == "left" else (node.right, node.left)
        text = _short(dropped)
        node.replace(kept.copy())
        return "predicate", f"drop `{text}`"
    return edit


def _drop_where(node: exp.Expr) -> tuple[str, str] | None:
    if not isinstance(node, exp.Where) or isinstance(node.this, exp.And):
        return None  # an AND is mutated side by side
    text = _short(node.this)
    if isinstance(node.parent, exp.Filter):  # agg FILTER (WHERE p): drop the FILTER, not leave `FILTER()`
        node.parent.replace(node.parent.this.copy())
        return "predicate", f"drop FILTER (WHERE `{text}`)"
    node.pop()
    return "predicate", f"drop WHERE `{text}`"


def _distinct(node: exp.Expr) -> tuple[str, str] | None:
    if not isinstance(node, exp.Distinct):
        return None
    if isinstance(node.parent, exp.Select):
        node.pop()
        return "distinct", "SELECT DISTINCT -> SELECT"
    if len(node.expressions) == 1:
        before = _short(node.parent) if node.parent else "DISTINCT"
        node.replace(node.expressions[0].copy())
        return "distinct", f"{before}: drop DISTINCT"
    return None


def _constant(node: exp.Expr) -> tuple[str, str] | None:
    if not isinstance(node, exp.Literal) or node.is_string:
        return None
    if isinstance(node.parent, exp.ArraySlice | exp.Neg):
        return None
    if isinstance(node.parent, exp.Select) and isinstance(node.parent.parent, exp.Exists):
        return None  # EXISTS (SELECT 1 …): any constant means the same
    text = node.this
    bumped = str(int(text) + 1) if text.isdigit() else str(float(text) + 1)
    where = _short(node.parent) if node.parent else text
    node.replace(exp.Literal.number(bumped))
    return "constant", f"{text} -> {bumped} in `{where}`"


_MUTABLE = (*FLIPS, exp.And, exp.Where, exp.Distinct, exp.Literal)
EDITS: tuple[Edit, ...] = (_comparison, _drop("left"), _drop("right"), _drop_where, _distinct, _constant)


def mutants(name: str, text: str) -> Iterator[Mutant]:
    """Every mutant of one file's text, in a stable order."""
    header, body = split_header(text)
    base = _parse(body)
    # Only nodes an edit can apply to are copied for: a trial edit on a throwaway copy tells which.
    candidates = [i for i, n in enumerate(x for t in base for x in t.walk()) if isinstance(n, _MUTABLE)]
    number = 0
    for index in candidates:
        for edit in EDITS:
            trees = [t.copy() for t in base]
            node = next(n for i, n in enumerate(x for t in trees for x in t.walk()) if i == index)
            done = edit(node)
            if done is None:
                continue
            number += 1
            yield Mutant(name, number, done[0], done[1], header + _print(trees))


def round_trip(text: str) -> str:
    header, body = split_header(text)
    return header + _print(_parse(body))


def tests_for(name: str) -> list[str]:
    """The tests that judge a check: those named after it; every check test for the shared views."""
    if name in SHARED:
        return list(CHECK_TESTS)
    return [*CHECK_TESTS, "-k", name]


def run_tests(name: str, python: str) -> bool:
    """True when the selected tests pass."""
    cmd = [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests_for(name)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, check=False).returncode == 0


def run_tests_in_process(name: str, python: str) -> bool:
    """As run_tests, in this process: the checks are read from disk on every run, so a mutant written to
    its file takes effect, and the seconds of interpreter and import start-up are paid once."""
    import pytest

    os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    args = ["-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests_for(name)]
    with contextlib.redirect_stdout(io.StringIO()):
        return pytest.main(args) == 0


def forked(runner: Callable[[str, str], bool], timeout: float) -> Callable[[str, str], bool]:
    """`runner` in a forked child (the imports are paid once, in this process) stopped after `timeout`
    seconds: a mutant that turns a join into a cross product must not stall the run. A child out of time
    counts as failing its tests (the mutant is killed, as mutmut counts a timeout)."""
    def run(name: str, python: str) -> bool:
        pid = os.fork()
        if pid == 0:  # the child: run the tests, report by exit code only
            code = 1
            try:
                code = 0 if runner(name, python) else 1
            finally:
                os._exit(code)
        deadline, done = time.monotonic() + timeout, 0
        try:
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    return os.waitstatus_to_exitcode(status) == 0
                if time.monotonic() > deadline:
                    log.warning("%s: tests still running after %.0f s; stopped", name, timeout)
                    return False
                time.sleep(0.2)
        finally:
            if not done:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    return run


@dataclass(frozen=True, slots=True)
class Outcome:
    mutant: Mutant
    killed: bool


def mutate_file(path: Path, python: str, limit: int | None = None,
                runner: Callable[[str, str], bool] = run_tests) -> list[Outcome]:
    """Run every mutant of `path` (at most `limit`); the file is restored afterwards whatever happens."""
    original = path.read_text(encoding="utf-8")
    name = path.stem
    outcomes: list[Outcome] = []
    try:
        path.write_text(round_trip(original), encoding="utf-8")
        if not runner(name, python):
            log.error("%s: the unmutated round trip fails its tests; skipped", name)
            return outcomes
        for m in mutants(name, original):
            if limit is not None and len(outcomes) >= limit:
                break
            path.write_text(m.sql, encoding="utf-8")
            killed = not runner(name, python)
            outcomes.append(Outcome(m, killed))
            log.info("%s #%d %s: %s", name, m.number, "killed" if killed else "SURVIVED", m.description)
    finally:
        path.write_text(original, encoding="utf-8")
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checks", nargs="*", help="check ids (file stems); default: every file")
    ap.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    ap.add_argument("--limit", type=int, default=None, help="at most this many mutants per file")
    ap.add_argument("--subprocess", action="store_true", help="a fresh pytest process per mutant (slower)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds a mutant's tests may take")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # A stop by `timeout` or kill must still restore the check file being mutated (mutate_file's finally).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    paths = sorted(CHECKS.glob("*.sql"))
    if args.checks:
        paths = [p for p in paths if p.stem in set(args.checks)]
    if args.list:
        for p in paths:
            for m in mutants(p.stem, p.read_text(encoding="utf-8")):
                log.info("%s #%d [%s] %s", m.file, m.number, m.operator, m.description)
        return 0
    started = time.monotonic()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    for module in ("duckdb", "pyarrow", "pytest", "collector.inspection"):  # loaded once, before forking
        importlib.import_module(module)
    runner = forked(run_tests if args.subprocess else run_tests_in_process, args.timeout)
    outcomes = [o for p in paths for o in mutate_file(p, sys.executable, args.limit, runner)]
    survivors = [o.mutant for o in outcomes if not o.killed]
    log.info("\n%d mutants, %d killed, %d survived (%.0f s)", len(outcomes), len(outcomes) - len(survivors),
             len(survivors), time.monotonic() - started)
    for m in survivors:
        log.info("SURVIVED %s #%d [%s] %s", m.file, m.number, m.operator, m.description)
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
