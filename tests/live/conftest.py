"""Fixtures for live-capture tests: a fresh client/server namespace pair per test (tests/live/netns.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live.netns import Topology, require_netns, topology
from tests.live.tls_checks import require_programs
from tests.live.tls_traffic import Capture, capture_traffic


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[Topology]:
    """The topology with the sink listening; skips (with the reason) where namespaces are unavailable."""
    require_netns()
    with topology(tmp_path / "netns") as t:
        yield t


@pytest.fixture
def netns_bare(tmp_path: Path) -> Iterator[Topology]:
    """The topology without the sink (start it with `start_sink()`, or serve something else on :80)."""
    require_netns()
    with topology(tmp_path / "netns", sink=False) as t:
        yield t


@pytest.fixture(scope="session")
def tls_capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Capture]:
    """The live TLS capture (tests/live/tls_traffic.py, set "mixed"), made once for the test session;
    skips (with the reason) without namespaces or a program it runs."""
    require_programs()
    work = tmp_path_factory.mktemp("tls")
    with topology(work / "netns", sink=False) as t:
        capture = capture_traffic(t, "mixed")
    yield capture
