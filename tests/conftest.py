"""Shared test options and paths, and the CI rule for skips.

Under CI=true a test may not skip for want of something `.ci/run` installs (a Debian package, root, the
shared captures CI lays beside the clone): such a skip becomes a failure, so a broken install step can
never turn into a quietly green run. Locally the same tests skip with their reason.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
REAL_PCAPS = SHARED / "pcaps" / "real"
FIXTURES = ROOT / "fixtures"
BIN = ROOT / ".venv" / "bin"


def load_script(path: Path, name: str) -> ModuleType:
    """A script outside the packages (bench/, tools/) imported as module `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module   # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


# Words of a skip reason that name what CI provides; a skip for any of them fails under CI=true.
CI_PROVIDES = ("chromium", "libpcap", "systemd-analyze", "root", "cap_net_raw", "af_packet", "netns", "veth",
               "network namespace", "iproute2", "absent", "not present", "not available", "tshark",
               "squid", "java", "pyspark")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") != "true" or not report.skipped or not isinstance(report.longrepr, tuple):
        return
    reason = str(report.longrepr[2])
    if any(word in reason.lower() for word in CI_PROVIDES):
        report.outcome = "failed"
        report.longrepr = f"CI=true: this test must run here, but it skipped: {reason}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite fixtures/expected/*.json from the current outputs (review the diff)")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
