"""Shared fixtures for the detector tests: one engine over the project's configs, seeded Faker values."""

from __future__ import annotations

from pathlib import Path

import pytest
from faker import Faker

from detectors.catalog import Catalog, load_catalog
from detectors.engine import Engine

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SUBJECT_KEY = b"test-deployment-key-0123456789ab"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(CONFIGS / "field_types.yaml")


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine.from_configs(CONFIGS, SUBJECT_KEY)


@pytest.fixture(scope="session")
def fake() -> Faker:
    f = Faker("zh_CN")
    f.seed_instance(20260101)
    return f
