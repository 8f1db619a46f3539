"""Shared fixtures: seeded synthetic EMG from mepkit.sim, paths to test data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # for `import naive`

#: XDF files written by other software (pyxdf's examples, MIT; see their README), kept in the
#: repository so the tests need nothing beside it.
SHARED_XDF = HERE / "data" / "xdf-examples"
SAMPLE_XDF = ROOT / "sample_data" / "sample_session.xdf"
FS = 5000.0


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def shared_xdf() -> Path:
    if not SHARED_XDF.is_dir():
        pytest.fail(f"shared XDF examples missing at {SHARED_XDF}")
    return SHARED_XDF


def pytest_sessionstart(session):
    """Compile (or load) every kernel once, before tests start subprocesses that use them."""
    from mepkit.warm import compile_all

    compile_all()
