"""Hostile inputs against a real `mmops serve` process: each is refused (4xx) within a second, the
server's memory barely moves, and /health keeps answering within 100 ms while they arrive.

A champion (the session's trained model folder) is registered in a temp MLflow store; the
server listens on 127.0.0.1 only. Every attack is sent a bounded number of times.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from datagen import hostile
from servers import free_port, mlflow_tracking, running

pytestmark = pytest.mark.slow
NAME = "mmops-hostile"
TOKEN = secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROUNDS = 3  # each attack is sent this many times


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _attacks() -> dict[str, tuple[bytes, str]]:
    """name -> (JSON body, what the 4xx detail must say)."""
    def one(**inst) -> bytes:
        return json.dumps({"instances": [inst]}).encode()

    attacks = {
        "wav 16001 Hz, 61 s": (one(audio=_b64(hostile.wav(16001, 16001 * 61))), "audio is 61.0 s"),
        "wav 47999 Hz, 61 s": (one(audio=_b64(hostile.wav(47999, 47999 * 61))), "audio is 61.0 s"),
        "wav 16 channels 192 kHz": (one(audio=_b64(hostile.wav(192000, 1920, channels=16))), "16 channels"),
        "flac 8 channels 384 kHz": (one(audio=_b64(hostile.flac(384000, 20.0, 8))), "sample rate 384000 Hz"),
        "png 60000x60000": (one(image=_b64(hostile.png_header(60000, 60000))), "3600000000 pixels"),
        "png 5000x5000": (one(image=_b64(hostile.png_header(5000, 5000))), "5000x5000 px"),
        "json 100k deep": (hostile.nested_json(100_000), "nested too deeply"),
    }
    for name, text in hostile.long_texts(500_000).items():
        attacks[f"text 500 kB {name}"] = (one(text=text), "above the 100,000-character limit")
    return attacks


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(served_model_dir, tmp_path_factory):
    """`mmops serve` of the session's trained model, registered as champion in a temp MLflow store
    (logged the way `register` logs it; the gate is not under test here)."""
    import mlflow
    from mlflow import MlflowClient

    from mmops.registry.register import log_pyfunc

    root = tmp_path_factory.mktemp("hostile")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with mlflow_tracking(uri):
        client = MlflowClient()
        experiment = client.create_experiment("hostile", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            version = log_pyfunc(client, served_model_dir, NAME, "model", {})
        client.set_registered_model_alias(NAME, "champion", version)
        port = free_port()
        cmd = [sys.executable, "-m", "mmops.cli.serve", "serve", "--model-name", NAME, "--port", str(port),
               "--poll-interval", "0"]
        base = f"http://127.0.0.1:{port}"
        env = {"MLFLOW_TRACKING_URI": uri, "MMOPS_SERVE_TOKEN": TOKEN}
        with running(cmd, f"{base}/health", root / "serve.log", env, timeout=180) as proc:
            with httpx.Client(base_url=base, timeout=30) as client:
                yield client, proc, port


PROBE = """
import http.client, select, sys, time
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
while not select.select([sys.stdin], [], [], 0)[0]:  # until the test closes our stdin
    started = time.perf_counter()
    conn.request("GET", "/health")
    resp = conn.getresponse()
    resp.read()
    print(resp.status, time.perf_counter() - started, flush=True)
    time.sleep(0.01)
"""


class HealthProbe:
    """Polls /health from its own process (so the test's own work cannot delay it); keeps every latency."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.latencies: list[float] = []
        self.statuses: set[int] = set()

    def __enter__(self) -> "HealthProbe":
        self.proc = subprocess.Popen([sys.executable, "-c", PROBE, str(self.port)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc) -> None:
        out, _ = self.proc.communicate(input="", timeout=30)
        for line in out.splitlines():
            status, seconds = line.split()
            self.statuses.add(int(status))
            self.latencies.append(float(seconds))


def test_hostile_inputs_are_refused_fast_in_bounded_memory(server):
    client, proc, port = server
    ok = {"instances": [{"text": "it is an even number"}]}
    assert client.post("/predict", json=ok, headers=AUTH).status_code == 200  # warm
    attacks = _attacks()
    rss_before = _rss_mb(proc.pid)
    slowest: dict[str, float] = {}
    with HealthProbe(port) as probe:
        for _ in range(ROUNDS):
            for name, (body, detail) in attacks.items():
                started = time.perf_counter()
                r = client.post("/predict", content=body, headers={**AUTH, "Content-Type": "application/json"})
                elapsed = time.perf_counter() - started
                slowest[name] = max(slowest.get(name, 0.0), elapsed)
                assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:200])
                assert detail in r.json()["detail"], (name, r.json()["detail"])
                assert elapsed < 1.0, (name, elapsed)
    growth = _rss_mb(proc.pid) - rss_before
    worst = max(probe.latencies)
    print(f"\nslowest answer per attack (s): { {k: round(v, 3) for k, v in slowest.items()} }"
          f"\nRSS growth {growth:.1f} MB; /health during the attack: {len(probe.latencies)} polls, "
          f"max {1000 * worst:.1f} ms")
    assert probe.statuses == {200} and len(probe.latencies) >= 10
    assert worst < 0.1, f"/health took {1000 * worst:.0f} ms during the attack"
    assert growth < 200, f"server RSS grew {growth:.0f} MB"
    assert client.post("/predict", json=ok, headers=AUTH).status_code == 200  # still serving


def test_heavy_but_legal_inputs_stay_bounded_and_health_answers(server):
    """Odd rates and an 8-channel 192 kHz FLAC within the limits are served, quickly, while /health answers."""
    client, proc, port = server
    legal = {
        "wav 16001 Hz": hostile.wav(16001, 16001 * 30),
        "wav 47999 Hz": hostile.wav(47999, 47999 * 20),
        "flac 8 channels 192 kHz": hostile.flac(192000, 30.0, 8),
    }
    rss_before = _rss_mb(proc.pid)
    with HealthProbe(port) as probe:
        for name, data in legal.items():
            started = time.perf_counter()
            r = client.post("/predict", json={"instances": [{"audio": _b64(data), "text": "odd"}]}, headers=AUTH)
            elapsed = time.perf_counter() - started
            assert r.status_code == 200, (name, r.text[:200])
            assert elapsed < 1.0, (name, elapsed)
    print(f"\nlegal heavy inputs: RSS growth {_rss_mb(proc.pid) - rss_before:.1f} MB; /health max "
          f"{1000 * max(probe.latencies):.1f} ms over {len(probe.latencies)} polls")
    assert max(probe.latencies) < 0.1
    assert _rss_mb(proc.pid) - rss_before < 200
