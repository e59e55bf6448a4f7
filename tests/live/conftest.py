"""Fixtures for live-capture tests: a fresh client/server namespace pair per test (tests/live/netns.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live.netns import Topology, require_netns, topology


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
