"""A throwaway PostgreSQL from the Debian packages, on 127.0.0.1, stopped by PID.

initdb refuses to run as root, so under root the server runs as the `postgres` OS user (the
Debian package creates it; created here if missing). Password authentication over TCP, as in
infra/compose.yaml; trust only on the private Unix socket.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from servers import free_port

PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "mmops"


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian layout), or None."""
    found = sorted((p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists()), key=lambda p: int(p.parent.name))
    return found[-1] if found else None


@dataclass(frozen=True)
class Postgres:
    port: int
    password: str
    pid: int

    def uri(self, database: str, driver: str = "psycopg2") -> str:
        return f"postgresql+{driver}://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password, dbname="postgres")
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def query(self, database: str, sql: str) -> list[tuple]:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password, dbname=database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            conn.close()


def _as_owner() -> tuple[list[str], str | None]:
    """(command prefix, OS user) to run PostgreSQL's binaries as a non-root user."""
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"], check=True)
    return ["runuser", "-u", "postgres", "--"], "postgres"


@contextmanager
def running_postgres(timeout: float = 60):
    """Start PostgreSQL in a fresh temp cluster; yield a `Postgres`; stop it and delete the cluster."""
    bin_dir = pg_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql); scripts/bootstrap.sh installs it")
    prefix, owner = _as_owner()
    # Not under pytest's tmp_path: that is private to root and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="mmops-pg-"))
    data, log = root / "data", root / "server.log"
    password = secrets.token_hex(12)
    (root / "pwfile").write_text(password + "\n")
    if owner:
        shutil.chown(root, owner)
        shutil.chown(root / "pwfile", owner)
    port = free_port()
    pid = None
    try:
        subprocess.run(
            [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={root / 'pwfile'}",
             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            check=True, capture_output=True, text=True,
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        started = subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", str(int(timeout)), "start"],
            capture_output=True, text=True,
        )
        if started.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {started.stderr}\n{log.read_text() if log.exists() else ''}")
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        yield Postgres(port=port, password=password, pid=pid)
    finally:
        if pid is not None:
            _stop(pid)
        shutil.rmtree(root, ignore_errors=True)


def _stop(pid: int, timeout: float = 30) -> None:
    """Fast shutdown (SIGINT to the postmaster), SIGKILL if it lingers."""
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
