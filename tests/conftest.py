"""Shared fixtures. Test data is read in place from ../shared/data (never copied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACEAPP_SHARED_DATA", REPO.parent / "shared" / "data"))
PHOTOS = SHARED_DATA / "samples" / "photos"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"the shared face data is missing at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def photos(shared_data) -> Path:
    return shared_data / "samples" / "photos"
