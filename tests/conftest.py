"""Shared fixtures. Test data is read in place from ../shared/data (never copied)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACEAPP_SHARED_DATA", REPO.parent / "shared" / "data"))
PHOTOS = SHARED_DATA / "samples" / "photos"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")



@pytest.fixture(scope="session", autouse=True)
def private_data_dir(tmp_path_factory):
    """What the app keeps in the user's data folder (a station's queued events, ...)
    goes to a folder of this test run, never to the real user's."""
    if os.environ.get("FACEAPP_DATA_DIR"):
        yield
        return
    os.environ["FACEAPP_DATA_DIR"] = str(tmp_path_factory.mktemp("user-data"))
    try:
        yield
    finally:
        os.environ.pop("FACEAPP_DATA_DIR", None)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"the shared face data is missing at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def photos(shared_data) -> Path:
    return shared_data / "samples" / "photos"


# ------------------------------------------------------------- gallery backends

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server of our own for the whole run (tests/helpers/pgserver.py).
    Missing PostgreSQL fails the tests that need it: .ci/run installs it."""
    from tests.helpers.pgserver import find_pg_bin, session_server

    if find_pg_bin() is None:
        pytest.fail("PostgreSQL is not installed (Debian package postgresql-15; .ci/run "
                    "installs it): the gallery tests on a server cannot run")
    return session_server()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def new_location(backend, tmp_path, request):
    """A function giving a new, empty gallery location on this test's backend: a file
    in tmp_path, or a fresh database on the test server (dropped afterwards)."""
    made: list[str] = []

    def make(name: str = "gallery"):
        if backend == "sqlite":
            return tmp_path / f"{name}.db"
        server = request.getfixturevalue("pg_server")
        made.append(server.create_database(f"t_{name[:20]}_{uuid.uuid4().hex[:10]}".lower()))
        return server.url(made[-1])

    yield make
    if made:
        server = request.getfixturevalue("pg_server")
        for name in made:
            server.drop_database(name)
