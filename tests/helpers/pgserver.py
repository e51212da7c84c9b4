"""A real, throwaway PostgreSQL server for the tests, started by the test process itself.

    server = PgServer()          # initdb in a fresh temporary directory, then start()
    db = server.create_database("gallery_test")
    url = server.url(db, sslmode="require")   # postgresql://faceapp_admin:...@127.0.0.1:PORT/...
    server.stop(mode="immediate")             # a crash; start() then runs crash recovery
    server.start()
    server.close()               # stop it and delete the directory (also done at exit)

The superuser is `faceapp_admin`. Unix-socket connections are trusted; TCP connections
(127.0.0.1 only, on a free port) need a scram-sha-256 password, so credentials can be
tested; TLS is on with a self-signed certificate (`ca_file`, for sslmode=verify-full).
Durability settings are PostgreSQL's defaults (fsync on), since tests crash the server.

As root the server runs as the system user `postgres`, else `nobody` (PostgreSQL refuses
to run as root), through setpriv or runuser; as any other user it runs as that user.
`session_server()` is one shared server per process, for a conftest fixture.
Binaries: $FACEAPP_PG_BIN, else the newest /usr/lib/postgresql/*/bin, else PATH.
"""

from __future__ import annotations

import atexit
import datetime
import ipaddress
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlencode

ADMIN = "faceapp_admin"
START_TIMEOUT_S = 120  # a shared, busy CPU can make initdb and crash recovery slow
STOP_TIMEOUT_S = 60


class PgServerError(RuntimeError):
    """The server could not be set up, started or stopped; the message has the log tail."""


def _version_key(path: Path) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.]", path.parent.name))


def find_pg_bin() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres, or None when PostgreSQL is absent."""
    def ok(folder: Path) -> bool:
        return all((folder / b).is_file() and os.access(folder / b, os.X_OK)
                   for b in ("initdb", "pg_ctl", "postgres"))

    override = os.environ.get("FACEAPP_PG_BIN")
    if override:
        return Path(override) if ok(Path(override)) else None
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"):
        for folder in sorted(Path("/").glob(pattern.lstrip("/")), key=_version_key, reverse=True):
            if ok(folder):
                return folder
    initdb = shutil.which("initdb")
    if initdb:
        for folder in (Path(initdb).parent, Path(initdb).resolve().parent):
            if ok(folder):
                return folder.resolve()
    return None


class _RunAs:
    """Who runs initdb/pg_ctl/postgres, and the command prefix that makes it so."""

    def __init__(self):
        if os.geteuid() != 0:
            entry = pwd.getpwuid(os.geteuid())
            self.name, self.uid, self.gid = entry.pw_name, entry.pw_uid, os.getegid()
            self.prefix: list[str] = []
            return
        for name in ("postgres", "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            if entry.pw_uid != 0:
                break
        else:
            raise PgServerError("running as root, and neither the user postgres nor nobody "
                                "exists to run PostgreSQL as (it refuses to run as root)")
        self.name, self.uid, self.gid = entry.pw_name, entry.pw_uid, entry.pw_gid
        if shutil.which("setpriv"):
            self.prefix = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}",
                           "--init-groups", "--"]
        elif shutil.which("runuser"):
            self.prefix = ["runuser", "-u", self.name, "--"]
        else:
            raise PgServerError("running as root, but neither setpriv nor runuser is there "
                                f"to run PostgreSQL as the user {self.name}")

    def own(self, path: Path, mode: int) -> None:
        os.chown(path, self.uid, self.gid)
        os.chmod(path, mode)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _self_signed(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))


# Stops the server and deletes its directory once the test process is gone, however it
# went (SIGKILL from a CI timeout included): it waits for EOF on a pipe that only the test
# process holds open.
_WATCHDOG = r"""
import json, os, shutil, signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
cfg = json.loads(sys.stdin.buffer.readline())
sys.stdin.buffer.read()
pidfile = os.path.join(cfg["data"], "postmaster.pid")
if os.path.exists(pidfile):
    try:
        subprocess.run(cfg["stop"], timeout=60, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=cfg["env"], cwd=cfg["base"])
    except Exception:
        pass
    try:
        os.kill(int(open(pidfile).readline()), signal.SIGKILL)
    except Exception:
        pass
shutil.rmtree(cfg["base"], ignore_errors=True)
"""

def _gone(pid: int, timeout: float) -> bool:
    """Whether process pid has exited (a zombie counts), waiting up to timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        except OSError:  # no /proc: ask the kernel
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


_live: set = set()  # servers this process made and has not closed


@atexit.register
def _close_all() -> None:
    for server in list(_live):
        server.close()


class PgServer:
    """One PostgreSQL cluster in a temporary directory; started on construction unless
    start=False. `settings` are extra postgresql.conf lines (name -> value)."""

    def __init__(self, *, start: bool = True, settings: dict[str, str] | None = None):
        self.bin = find_pg_bin()
        if self.bin is None:
            raise PgServerError("PostgreSQL is not installed: no initdb/pg_ctl in "
                                "/usr/lib/postgresql/*/bin or on PATH (Debian: apt-get "
                                "install postgresql; or set FACEAPP_PG_BIN)")
        self.run_as = _RunAs()
        self.admin_user = ADMIN
        self.admin_password = secrets.token_urlsafe(18)
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.settings = dict(settings or {})
        self.running = False
        self._started_once = False
        self._owner_pid = os.getpid()
        self._closed = False
        self._watchdog = None
        self._log_offset = 0
        # Under /tmp, not $TMPDIR: the socket path must stay short (about 100 bytes) and
        # every parent must be traversable by the server user.
        parent = "/tmp" if os.access("/tmp", os.W_OK | os.X_OK) else None
        self.base = Path(tempfile.mkdtemp(prefix="faceapp-pg-", dir=parent))
        _live.add(self)
        try:
            os.chmod(self.base, 0o755)
            self.data = self.base / "data"
            self.socket_dir = self.base / "sock"
            self.log_file = self.base / "server.log"
            self.ca_file = self.base / "ca.crt"  # the server's self-signed certificate
            self._env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
            self._env.update(LC_ALL="C", LANG="C", HOME=str(self.base))
            self._start_watchdog()
            self._initdb()
            if start:
                self.start()
        except BaseException:
            self.close()
            raise

    # -- setup -------------------------------------------------------------------------

    def _cmd(self, binary: str, *args: str) -> list[str]:
        return [*self.run_as.prefix, str(self.bin / binary), *args]

    def _run(self, binary: str, *args: str, timeout: float = START_TIMEOUT_S):
        return subprocess.run(self._cmd(binary, *args), cwd=self.base, env=self._env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              check=False, timeout=timeout)

    def _start_watchdog(self) -> None:
        cfg = {"data": str(self.data), "base": str(self.base), "env": self._env,
               "stop": self._cmd("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate",
                                 "-w", "-t", "30")}
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        # On stdin, not argv: the environment should not show in ps.
        self._watchdog.stdin.write(json.dumps(cfg).encode() + b"\n")
        self._watchdog.stdin.flush()

    def _initdb(self) -> None:
        for d in (self.data, self.socket_dir):
            d.mkdir()
        self.run_as.own(self.data, 0o700)
        self.run_as.own(self.socket_dir, 0o755)
        self.log_file.touch()
        self.run_as.own(self.log_file, 0o600)
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.admin_password + "\n")
        self.run_as.own(pwfile, 0o600)
        try:
            done = self._run("initdb", "-D", str(self.data), "-U", ADMIN, f"--pwfile={pwfile}",
                             "--auth-local=trust", "--auth-host=scram-sha-256",
                             "--encoding=UTF8", "--no-locale", "--no-sync")
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise PgServerError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        (self.data / "pg_hba.conf").write_text(
            "# TYPE  DATABASE     USER  ADDRESS       METHOD\n"
            "local   all          all                 trust\n"
            "local   replication  all                 trust\n"
            "host    all          all   127.0.0.1/32  scram-sha-256\n"
            "host    replication  all   127.0.0.1/32  scram-sha-256\n")
        _self_signed(self.data / "server.crt", self.data / "server.key")
        self.run_as.own(self.data / "server.crt", 0o644)
        self.run_as.own(self.data / "server.key", 0o600)
        shutil.copyfile(self.data / "server.crt", self.ca_file)
        os.chmod(self.ca_file, 0o644)
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\ninclude 'faceapp_test.conf'\n")
        self._write_conf()

    def _write_conf(self) -> None:
        def literal(v) -> str:
            return "'" + str(v).replace("'", "''") + "'"
        settings = {"listen_addresses": literal(self.host), "port": str(self.port),
                    "unix_socket_directories": literal(self.socket_dir),
                    "max_connections": "100", "ssl": "on",
                    "ssl_cert_file": literal("server.crt"), "ssl_key_file": literal("server.key"),
                    "logging_collector": "off", "log_min_messages": "warning"}
        settings.update(self.settings)
        conf = self.data / "faceapp_test.conf"
        conf.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        self.run_as.own(conf, 0o600)

    # -- life cycle --------------------------------------------------------------------

    def log_tail(self, lines: int = 40, since_start: bool = False) -> str:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(self._log_offset if since_start else 0)
                text = f.read().decode(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> None:
        """Start the server and wait until it accepts connections (crash recovery included)."""
        if self._closed:
            raise PgServerError("this PgServer was closed")
        if self.running:
            return
        for attempt in range(3):
            self._log_offset = self.log_file.stat().st_size
            done = self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log_file),
                             "-w", "-t", str(START_TIMEOUT_S), timeout=START_TIMEOUT_S + 30)
            if done.returncode == 0:
                self.running = self._started_once = True
                return
            log = self.log_tail(since_start=True)
            self._kill_leftover()
            # Someone took the free port between the pick and the start: pick another,
            # but only before the first start (URLs already handed out name the port).
            if "could not bind" in log and attempt < 2 and not self._started_once:
                self.port = _free_port()
                self._write_conf()
                continue
            break
        raise PgServerError(f"PostgreSQL did not start (pg_ctl exit {done.returncode}): "
                            f"{done.stdout.strip()} {done.stderr.strip()}\n"
                            f"--- server log tail ---\n{log}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: mode "fast" (clean), "smart", or "immediate" (a crash: no
        checkpoint, the next start runs WAL recovery)."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown stop mode {mode!r}")
        if not (self.data / "postmaster.pid").exists():
            self.running = False
            return
        done = self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w",
                         "-t", str(STOP_TIMEOUT_S), timeout=STOP_TIMEOUT_S + 30)
        self.running = False
        if done.returncode != 0 and (self.data / "postmaster.pid").exists():
            self._kill_leftover()
            raise PgServerError(f"pg_ctl stop -m {mode} failed ({done.returncode}): "
                                f"{done.stdout.strip()} {done.stderr.strip()}\n"
                                f"--- server log ---\n{self.log_tail()}")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _kill_leftover(self, pid: int | None = None) -> None:
        pid = pid or self._postmaster_pid()
        if pid is None or _gone(pid, 0):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        _gone(pid, 10)

    def close(self) -> None:
        """Stop the server (fast, else immediate, else SIGKILL) and delete its directory."""
        if self._closed or os.getpid() != self._owner_pid:
            return  # a forked child must not tear down its parent's server
        self._closed = True
        _live.discard(self)
        try:
            if (getattr(self, "data", None) and (self.data / "postmaster.pid").exists()):
                pid = self._postmaster_pid()
                for mode in ("fast", "immediate"):
                    try:
                        self.stop(mode)
                        break
                    except (PgServerError, subprocess.TimeoutExpired):
                        continue
                # pg_ctl returns once postmaster.pid is gone, a moment before the
                # process itself: wait for it, so none is left when close() returns.
                if pid is not None and not _gone(pid, 10):
                    self._kill_leftover(pid)
        finally:
            self.running = False
            shutil.rmtree(self.base, ignore_errors=True)
            if self._watchdog is not None:
                try:
                    self._watchdog.stdin.close()
                    self._watchdog.wait(timeout=10)
                except Exception:
                    pass

    def __enter__(self) -> PgServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- connecting --------------------------------------------------------------------

    def url(self, dbname: str, user: str = ADMIN, password: str | None = None,
            tcp: bool = True, sslmode: str | None = None) -> str:
        """A libpq URL. For the admin, password=None means the admin's password (TCP needs
        one); for other roles it means none in the URL (libpq then asks .pgpass/PGPASSWORD).
        sslmode verify-ca/verify-full also sets sslrootcert to `ca_file`."""
        if password is None and user == self.admin_user and tcp:
            password = self.admin_password
        auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
        params = {}
        if tcp:
            base = f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname, safe='')}"
        else:
            base = f"postgresql://{auth}@/{quote(dbname, safe='')}"
            params.update(host=str(self.socket_dir), port=str(self.port))
        if sslmode:
            params["sslmode"] = sslmode
            if sslmode in ("verify-ca", "verify-full"):
                params["sslrootcert"] = str(self.ca_file)
        return base + ("?" + urlencode(params, quote_via=quote, safe="/") if params else "")

    def connect(self, dbname: str = "postgres", user: str = ADMIN, **kwargs):
        """A psycopg connection over the unix socket (trusted: no password needed)."""
        import psycopg
        kwargs.setdefault("connect_timeout", 30)
        return psycopg.connect(host=str(self.socket_dir), port=self.port, user=user,
                               dbname=dbname, **kwargs)

    def psql(self, sql, dbname: str = "postgres", params=None):
        """Run SQL as the admin in autocommit mode; the rows of the last statement if it
        returned any, else None. Without params, several ;-separated statements may go."""
        with self.connect(dbname, autocommit=True) as conn:
            cur = conn.execute(sql, params)
            rows = cur.fetchall() if cur.description is not None else None
            while cur.nextset():
                rows = cur.fetchall() if cur.description is not None else None
            return rows

    def create_database(self, name: str, owner: str | None = None) -> str:
        from psycopg import sql
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner:
            query += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        self.psql(query)
        return name

    def drop_database(self, name: str) -> None:
        from psycopg import sql
        self.psql(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def create_role(self, name: str, password: str | None = None, login: bool = True) -> str:
        from psycopg import sql
        query = sql.SQL("CREATE ROLE {} {}").format(
            sql.Identifier(name), sql.SQL("LOGIN" if login else "NOLOGIN"))
        if password is not None:
            query += sql.SQL(" PASSWORD {}").format(sql.Literal(password))
        self.psql(query)
        return name

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self.running else "stopped")
        return f"<PgServer {self.host}:{self.port} {self.base} as {self.run_as.name}, {state}>"


_session: PgServer | None = None
_session_lock = threading.Lock()


def session_server() -> PgServer:
    """One shared, started server per process, made on first use and closed at exit.
    conftest: `@pytest.fixture(scope="session")\\ndef pg(): return session_server()`."""
    global _session
    with _session_lock:
        if _session is None or _session._closed:
            _session = PgServer()
        elif not _session.running:
            _session.start()
        return _session
