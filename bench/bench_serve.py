"""Benchmark the model server: `python bench/bench_serve.py [--requests 300] [--concurrency 8]`.

Trains and registers a small model (the default architecture from params, 1 epoch on a
200-sample avdigits set: latency does not depend on accuracy) in a temp MLflow store, starts
`mmops serve` as a real process on 127.0.0.1 and prints:
  - p50 / p95 latency of one single-instance request (sequential, keep-alive connection);
  - throughput (instances/s) at concurrency 8;
  - the ratio of that throughput to a bare `predict_frame` forward over the same inputs in this
    process (batches of 8, the batch size concurrency 8 allows; and batches of 1);
  - CPU time per instance of the server process, the bench client and the bare forward.
Goals: p50 <= 30 ms, ratio >= 0.8. Client, server and baseline share this machine's cores, so
on a small shared machine the figures move with whatever else runs: repeat and compare.
Use `--model-name/--tracking-uri` to benchmark an already registered champion instead.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._report import record  # noqa: E402
from mmops.env import configure_tool_env  # noqa: E402
from mmops.processes import stop_group, wait_healthy  # noqa: E402

configure_tool_env()


def build_champion(root: Path, name: str, n_samples: int) -> None:
    """Demo data -> validate -> preprocess -> train (1 epoch) -> register, promoted to champion."""
    from mlflow import MlflowClient

    from mmops import stages
    from mmops.catalog import Catalog
    from mmops.params_file import load_params

    overrides = {
        "paths.data": root / "data", "paths.reports": root / "reports", "paths.features": root / "features",
        "paths.model": root / "model", "paths.metrics": root / "metrics", "paths.cache": root / "cache",
        "demo.n_samples": n_samples, "train.epochs": 1, "gate.floors.accuracy": 0.0, "gate.floors.macro_f1": 0.0,
        "registry.model_name": name, "registry.experiment": "bench-serve",
    }
    params = load_params(None, [f"{k}={v}" for k, v in overrides.items()])
    paths = Catalog.from_paths(params.paths)
    stages.demo_data(params, paths)
    stages.validate(params, paths)
    stages.preprocess(params, paths)
    stages.train(params, paths)
    stages.evaluate(params, paths)
    result = stages.register(params, paths)
    if not result["promoted"]:
        MlflowClient().set_registered_model_alias(name, "champion", result["version"])


def test_rows(data_dir: Path, n: int):
    """n rows with all three modalities, media as absolute paths (for predict_frame)."""
    from mmops.data.manifest import read_manifest

    df = read_manifest(data_dir)
    df = df[(df["image"] != "") & (df["audio"] != "") & (df["text"] != "")].head(n).reset_index(drop=True)
    for col in ("image", "audio"):
        df[col] = [str(data_dir / p) for p in df[col]]
    return df[["text", "image", "audio"]]


def json_body(row) -> bytes:
    inst = {"text": row["text"]}
    for col in ("image", "audio"):
        inst[col] = base64.b64encode(Path(row[col]).read_bytes()).decode()
    return json.dumps({"instances": [inst]}).encode()


def post(conn: http.client.HTTPConnection, body: bytes) -> dict:
    conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
    return json.loads(data)


def latency(port: int, bodies: list[bytes], n: int, warmup: int = 20) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(warmup):
        post(conn, bodies[i % len(bodies)])
    times = []
    for i in range(n):
        t = time.perf_counter()
        post(conn, bodies[i % len(bodies)])
        times.append(time.perf_counter() - t)
    conn.close()
    return times


def throughput(port: int, bodies: list[bytes], concurrency: int, n: int) -> float:
    """Instances/s with `concurrency` clients, each on its own keep-alive connection."""
    per_client = n // concurrency
    barrier = threading.Barrier(concurrency + 1)
    errors: list[BaseException] = []

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        post(conn, bodies[k % len(bodies)])  # connect + warm
        barrier.wait()
        try:
            for i in range(per_client):
                post(conn, bodies[(k * per_client + i) % len(bodies)])
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} clients failed: {errors[0]}")
    return per_client * concurrency / elapsed


def bare_throughput(model_uri: str, rows, batch: int, n: int) -> tuple[float, float]:
    """(instances/s, CPU s per instance) of predict_frame alone (bytes in, like the server)."""
    import pandas as pd
    import torch

    from mmops.inference.predict import load_model_uri, predict_frame
    from mmops.serve.settings import ServeSettings

    torch.set_num_threads(ServeSettings.from_env().torch_threads)  # what the server uses
    loaded = load_model_uri(model_uri)
    as_bytes = pd.DataFrame({
        "text": rows["text"],
        "image": [Path(p).read_bytes() for p in rows["image"]],
        "audio": [Path(p).read_bytes() for p in rows["audio"]],
    })
    frames = [as_bytes.iloc[[(i + j) % len(as_bytes) for j in range(batch)]] for i in range(0, n, batch)]
    for f in frames[:3]:
        predict_frame(loaded, f)
    start, cpu = time.perf_counter(), time.process_time()
    for f in frames:
        predict_frame(loaded, f, batch_size=batch)
    done = len(frames) * batch
    return done / (time.perf_counter() - start), (time.process_time() - cpu) / done


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def scrape(port: int, names: tuple[str, ...]) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key in names:
            out[key] = float(value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300, help="sequential requests for the latency figures")
    ap.add_argument("--throughput-requests", type=int, default=480, help="requests at concurrency N")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=float, default=None, help="server batching wait (default: server's)")
    ap.add_argument("--samples", type=int, default=200, help="avdigits samples to train the bench model on")
    ap.add_argument("--model-name", default=None, help="bench this registered model (needs --tracking-uri)")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--data", type=Path, default=None, help="dataset for inputs (default: the one built)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="mmops-bench-serve-"))
    name = args.model_name or "mmops-bench"
    os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri or f"sqlite:///{root / 'mlflow.db'}"
    data_dir = args.data
    proc = None
    if args.model_name is None:
        t = time.perf_counter()
        build_champion(root, name, args.samples)
        data_dir = data_dir or root / "data"
        print(f"setup: trained and registered {name} in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    if data_dir is None:
        raise SystemExit("--data is required with --model-name")
    rows = test_rows(Path(data_dir), 64)
    bodies = [json_body(r) for _, r in rows.iterrows()]

    port = _free_port()
    cmd = [sys.executable, "-m", "mmops.cli.serve", "serve", "--port", str(port), "--model-name", name,
           "--poll-interval", "0", "--log-dir", str(root / "predictions")]  # logging on, as served by default
    if args.max_wait_ms is not None:
        cmd += ["--max-wait-ms", str(args.max_wait_ms)]
    log = open(root / "server.log", "w")
    try:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
        wait_healthy(f"http://127.0.0.1:{port}/health", proc, timeout=180, log=root / "server.log")

        lat = latency(port, bodies, args.requests)
        keys = ("mmops_model_call_seconds_sum", "mmops_model_call_seconds_count", "mmops_batch_size_sum",
                "mmops_batch_size_count")
        before = scrape(port, keys)
        cpu0, client0 = cpu_seconds(proc.pid), time.process_time()
        served = throughput(port, bodies, args.concurrency, args.throughput_requests)
        cpu1, client1 = cpu_seconds(proc.pid), time.process_time()
        after = scrape(port, keys)
    finally:
        if proc is not None:
            stop_group(proc)
        log.close()

    model_uri = f"models:/{name}@champion"
    bare8, bare8_cpu = bare_throughput(model_uri, rows, args.concurrency, args.throughput_requests)
    bare1, _ = bare_throughput(model_uri, rows, 1, min(args.throughput_requests, 200))

    ms = sorted(x * 1000 for x in lat)
    p50, p95 = statistics.median(ms), ms[int(0.95 * (len(ms) - 1))]
    delta = {k: after[k] - before[k] for k in keys}
    calls = max(delta["mmops_model_call_seconds_count"], 1)
    mean_batch = delta["mmops_batch_size_sum"] / calls
    call_ms = 1000 * delta["mmops_model_call_seconds_sum"] / calls
    from mmops.serve.settings import ServeSettings

    print(f"machine: {os.cpu_count()} cores, shared by client, server and baseline; "
          f"torch threads {ServeSettings.from_env().torch_threads} (server and baseline)")
    print(f"latency, 1 instance, sequential ({len(ms)} requests): p50 {p50:.1f} ms  p95 {p95:.1f} ms"
          f"  [goal p50 <= 30 ms: {'met' if p50 <= 30 else 'NOT met'}]")
    print(f"throughput at concurrency {args.concurrency}: {served:.1f} instances/s "
          f"(mean batch {mean_batch:.1f} rows, model call {call_ms:.1f} ms)")
    print(f"bare predict_frame, batches of {args.concurrency}: {bare8:.1f} instances/s;  batches of 1: {bare1:.1f}/s")
    ratio = served / bare8
    print(f"ratio served / bare (batches of {args.concurrency}): {ratio:.2f}  [goal >= 0.8: "
          f"{'met' if ratio >= 0.8 else 'NOT met'}];  served / bare (batches of 1): {served / bare1:.2f}")
    record("serve", "REST latency p50, batch 1", p50, "ms", "<= 30", f"p95 {p95:.1f} ms, {len(ms)} requests")
    record("serve", f"REST throughput ÷ bare predict_frame (concurrency {args.concurrency})", ratio, "ratio", ">= 0.8",
           f"served {served:.1f}/s, bare {bare8:.1f}/s")
    n = args.throughput_requests // args.concurrency * args.concurrency
    if cpu0 is not None and cpu1 is not None:
        print(f"CPU per instance at concurrency {args.concurrency}: server {1000 * (cpu1 - cpu0) / n:.1f} ms, "
              f"bench client {1000 * (client1 - client0) / n:.1f} ms; bare predict_frame (batches of "
              f"{args.concurrency}) {1000 * bare8_cpu:.1f} ms")
    if args.keep:
        print(f"kept {root}", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
