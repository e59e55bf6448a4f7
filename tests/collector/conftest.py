"""Fixtures of the collector tests."""

from __future__ import annotations

import pytest

from collector.models import Filing

from .builders import make_filing


@pytest.fixture
def filing() -> Filing:
    return make_filing()
