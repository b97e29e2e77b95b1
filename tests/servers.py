"""Start real servers for tests on 127.0.0.1 and stop them by PID."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import socket
import ssl
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from mmops.processes import stop_group, wait_healthy

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(cmd: list[str], health_url: str, log: Path, env: dict | None = None, timeout: float = 120,
            cafile: Path | None = None):
    """Run `cmd` in its own process group until the block ends; then stop it by PID.

    `cafile`: the certificate an https `health_url` is checked against (e.g. a self-signed one).
    """
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
        )
    try:
        if cafile:  # wait_healthy uses urlopen, which takes the installed opener
            context = ssl.create_default_context(cafile=str(cafile))
            urllib.request.install_opener(urllib.request.build_opener(urllib.request.HTTPSHandler(context=context)))
        try:
            wait_healthy(health_url, proc, timeout, log)
        finally:
            urllib.request.install_opener(None)
        yield proc
    finally:
        stop_group(proc, timeout=20)


def _prefect_server_cmd(home: Path) -> tuple[list[str], dict[str, str], str]:
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    env = {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    return cmd, env, f"http://127.0.0.1:{port}/api"


@contextmanager
def prefect_server(home: Path):
    """A real `prefect server start` on 127.0.0.1 with its own PREFECT_HOME; yields the API URL.

    Tests that only need *a* server should take the session's shared one instead (the
    `prefect_api` / `shared_prefect` fixtures in conftest.py): each start costs 15-25 s of CPU.
    """
    cmd, env, api = _prefect_server_cmd(home)
    with running(cmd, f"{api}/health", home / "server.log", env):
        with prefect_api_at(api):
            yield api


@contextmanager
def prefect_api_at(api: str):
    """Point this process's Prefect client at `api` for the block; deliver its buffered logs and
    events before leaving (the server must still be up)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}):
        try:
            yield api
        finally:
            drain_prefect_clients()


# Loop services of the server that no test on a shared server relies on: each wakes every few
# seconds, about half of an idle server's CPU (~1 s a minute). Kept: the task-run recorder and
# event persister (task runs reach the server through events) and the repossessor (it frees the
# concurrency slot of a run that died holding it).
IDLE_SERVICES_OFF = {
    f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false"
    for name in ("SCHEDULER", "LATE_RUNS", "FOREMAN", "PAUSE_EXPIRATIONS", "CANCELLATION_CLEANUP", "DB_VACUUM",
                 "CLEANUP_RECONCILER", "TRIGGERS", "EVENT_LOGGER")
}


class StartedPrefectServer:
    """A `prefect server start` already launched (own PREFECT_HOME) whose health is awaited only
    when its URL is first asked for, so callers can do other work while it boots.

    `env`: extra settings of the server (e.g. IDLE_SERVICES_OFF).
    """

    def __init__(self, home: Path, timeout: float = 180, env: dict[str, str] | None = None):
        self.home, self.timeout = home, timeout
        cmd, server_env, self._api = _prefect_server_cmd(home)
        self.log = home / "server.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, **server_env, **(env or {})}, start_new_session=True)
        self._healthy = False

    @property
    def api(self) -> str:
        """The API URL, once the server answers /health (raises if it died or never answered)."""
        if not self._healthy:
            wait_healthy(f"{self._api}/health", self.proc, self.timeout, self.log)
            self._healthy = True
        return self._api

    def stop(self) -> None:
        """Deliver what the clients buffered, then stop it by PID (again: nothing)."""
        if self.proc.poll() is None and self._healthy:
            drain_prefect_clients()
        stop_group(self.proc, timeout=20)


def drain_prefect_clients(timeout: float = 30) -> None:
    """Deliver buffered flow-run logs and events while the server is still up.

    Left queued, they are retried against the stopped server at interpreter exit, for minutes.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        service.drain_all(timeout=timeout, at_exit=False)


@contextmanager
def mlflow_tracking(uri: str):
    """Point MLflow (env var and the process-wide URI) at `uri` for the block, then restore."""
    import mlflow

    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old
        mlflow.set_tracking_uri(None)


MLFLOW_ADMIN = "mmops-admin"


@contextmanager
def mlflow_auth_server(root: Path, admin_password: str, default_permission: str = "NO_PERMISSIONS"):
    """A real `mlflow server --app-name basic-auth` on 127.0.0.1 with its own auth ini; yields the URI.

    SQLite tracking and auth stores in `root`; the admin password and CSRF key go by environment
    only (no secret in argv or in the ini). The caller points clients at the URI.
    """
    root.mkdir(parents=True, exist_ok=True)
    ini = root / "basic_auth.ini"
    ini.write_text(
        f"[mlflow]\ndefault_permission = {default_permission}\ndatabase_uri = sqlite:///{root / 'auth.db'}\n"
        f"admin_username = {MLFLOW_ADMIN}\n"
        # each request otherwise re-hashes the password (PBKDF2): ~1 s on a busy test machine
        "auth_cache_ttl_seconds = 60\n"
    )
    port = free_port()
    cmd = [
        str(BIN / "mlflow"), "server", "--app-name", "basic-auth", "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", (root / "artifacts").as_uri(),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]
    env = {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }
    uri = f"http://127.0.0.1:{port}"
    with running(cmd, f"{uri}/health", root / "server.log", env, timeout=180) as proc:
        yield uri, proc


def self_signed_cert(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A one-day self-signed certificate for `host` (an IP SAN) and its key, as PEM files in `folder`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
