"""Where the catalogs come from (detectors/configs.py): the override, else the checkout, else the wheel."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors import configs
from tests.conftest import ROOT


def test_an_override_wins_then_the_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(configs.ENV, str(tmp_path))
    assert configs.configs_dir() == tmp_path
    monkeypatch.delenv(configs.ENV)
    assert configs.configs_dir() == ROOT / "configs"


def test_without_a_checkout_the_packaged_copy_is_used(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.delenv(configs.ENV, raising=False)
    monkeypatch.setattr(configs, "_CHECKOUT", tmp_path / "no-checkout")
    assert configs.configs_dir().parts[-2:] == ("detectors", "_configs")
