"""The throwaway PostgreSQL server of tests/helpers/pgserver.py, against the real thing:
TLS over TCP, the unix socket, password auth through a .pgpass file, crash recovery.
CI installs PostgreSQL (.ci/run); without it these tests fail (a missing server is
a broken setup, not a reason to test less)."""

import os
import uuid

import pytest

from tests.helpers.pgserver import (
    ADMIN,
    PgServer,
    PgServerError,
    session_server,
)

import psycopg  # noqa: E402  (a dependency of faceapp itself)


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def server(pg_server) -> PgServer:
    return pg_server


@pytest.fixture
def database(server):
    name = server.create_database(_name("t"))
    yield name
    server.drop_database(name)


def _uid_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Uid:")).split()[1])


def test_starts_as_an_unprivileged_user(server):
    assert server.running
    assert server is session_server()  # one shared server per process
    version = server.psql("SHOW server_version_num")[0][0]
    assert int(version) >= 100000
    pid = server._postmaster_pid()
    assert pid is not None
    if os.path.exists(f"/proc/{pid}/status"):
        assert _uid_of(pid) == server.run_as.uid
        if os.geteuid() == 0:
            assert server.run_as.uid != 0
    assert server.psql("SHOW max_connections") == [("100",)]
    assert server.psql("SHOW fsync") == [("on",)]  # crash tests need real durability


def test_tcp_with_tls(server, database):
    url = server.url(database, sslmode="require")
    assert url.startswith(f"postgresql://{ADMIN}:") and f"@127.0.0.1:{server.port}/" in url
    with psycopg.connect(url, connect_timeout=30) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (database,)
        row = conn.execute("SELECT ssl, version FROM pg_stat_ssl "
                           "WHERE pid = pg_backend_pid()").fetchone()
        assert row[0] is True, row
        assert conn.execute("SELECT inet_server_addr()::text").fetchone()[0].startswith("127.0.0.1")


def test_tls_certificate_verifies(server, database):
    # The self-signed certificate names 127.0.0.1, so verify-full against ca_file works.
    with psycopg.connect(server.url(database, sslmode="verify-full"), connect_timeout=30) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl "
                            "WHERE pid = pg_backend_pid()").fetchone() == (True,)


def test_tcp_needs_the_right_password(server, database):
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(server.url(database, password="wrong"), connect_timeout=30)


def test_unix_socket(server, database):
    url = server.url(database, tcp=False)
    assert url == (f"postgresql://{ADMIN}@/{database}"
                   f"?host={server.socket_dir}&port={server.port}")
    with psycopg.connect(url, connect_timeout=30) as conn:
        # A unix-socket connection has no client address and no TLS.
        assert conn.execute("SELECT inet_client_addr()").fetchone() == (None,)
        assert conn.execute("SELECT current_user").fetchone() == (ADMIN,)


def test_role_password_from_pgpass(server, database, tmp_path, monkeypatch):
    role = server.create_role(_name("app"), password="s3cret:with\\odd'chars")
    server.psql(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
    url = server.url(database, user=role, sslmode="require")
    assert ":s3cret" not in url and "@127.0.0.1" in url
    monkeypatch.delenv("PGPASSWORD", raising=False)

    # No password anywhere: refused.
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "missing"))
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=30)

    # host:port:database:user:password, with ':' and '\' escaped.
    escaped = "s3cret:with\\odd'chars".replace("\\", "\\\\").replace(":", "\\:")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{server.port}:{database}:{role}:{escaped}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    with psycopg.connect(url, connect_timeout=30) as conn:
        assert conn.execute("SELECT current_user, ssl FROM pg_stat_ssl "
                            "WHERE pid = pg_backend_pid()").fetchone() == (role, True)
    method = server.psql("SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' "
                         "AND 'all' = ANY(database)")
    assert method == [("scram-sha-256",)]


def test_committed_data_survives_a_crash():
    with PgServer() as server:
        db = server.create_database("crash")
        with psycopg.connect(server.url(db)) as conn:  # a transaction, committed on exit
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept SELECT generate_series(1, 1000)")
        conn = psycopg.connect(server.url(db))
        conn.execute("INSERT INTO kept VALUES (-1)")  # left uncommitted by the crash
        server.stop(mode="immediate")
        conn.close()
        assert not server.running
        server.start()
        assert "automatic recovery in progress" in server.log_tail(200)
        rows = server.psql("SELECT count(*), min(n), max(n) FROM kept", dbname=db)
        assert rows == [(1000, 1, 1000)]
        server.restart()  # a clean stop and start as well
        assert server.psql("SELECT count(*) FROM kept", dbname=db) == [(1000,)]
        base, pid = server.base, server._postmaster_pid()
    assert not base.exists()
    assert _exited(pid)


def _exited(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie has exited
    except FileNotFoundError:
        return True


def test_a_failed_start_shows_the_log():
    with pytest.raises(PgServerError, match=r"(?s)did not start.*invalid value for parameter"):
        PgServer(settings={"shared_buffers": "'lots'"})
