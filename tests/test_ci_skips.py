"""The CI rule of tests/conftest.py: under CI=true a skip for want of something .ci/run provides is a
failure; other skips stay skips; without CI=true both skip (a developer's machine may lack chromium)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

PROBES = '''
import pytest

def test_needs_chromium():
    pytest.skip("needs chromium (Debian package chromium)")

def test_needs_root():
    pytest.skip("needs root: creates network namespaces and a veth pair")

def test_not_for_this_platform():
    pytest.skip("only meaningful on big-endian hosts")
'''


@pytest.mark.parametrize(("ci", "failed", "skipped"), [("true", 2, 1), ("", 0, 3)])
def test_skips_for_what_ci_installs_fail_under_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                  ci: str, failed: int, skipped: int) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    pytester.makepyfile(test_probes=PROBES)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=failed, skipped=skipped)
    if failed:
        result.stdout.fnmatch_lines(["*CI=true: this test must run here, but it skipped*chromium*"])
