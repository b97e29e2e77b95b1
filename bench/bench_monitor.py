"""Benchmark what the prediction log costs the server: `python bench/bench_monitor.py [--rounds 6]`.

Trains the demo's model (params.yaml, 200 avdigits samples, 1 epoch: cost does not depend on
accuracy), or takes an existing one (`--model-dir artifacts/model --data data/avdigits`), and serves
it twice in this one process (uvicorn on threads, the same model folder): once with the prediction
log on (params defaults: summary features in the log's writer process, Parquet every 5 s), once with it
off. In interleaved rounds (on, off, off, on, ...) it measures on each:
  - p50 latency of one single-instance request (text + image + audio, sequential, keep-alive);
  - throughput (instances/s) at concurrency 8;
and prints latency on ÷ off (goal <= 1.05) and throughput on ÷ off (goal >= 0.95: at most 5 %
less), this process's CPU time per request on ÷ off (steadier than wall time when other work
shares the cores) and the same with the log's writer process's CPU added, the mean cost of the
summary features of one request row, and the rows the log wrote and dropped. Client, servers and log share this machine's cores: compare within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._report import record  # noqa: E402
from bench.bench_serve import _free_port, json_body, latency, test_rows, throughput  # noqa: E402
from mmops.env import configure_tool_env  # noqa: E402

configure_tool_env()
BENCH = "monitor"


def start_server(app) -> tuple[object, threading.Thread, int]:
    """`app` under uvicorn on a thread of this process; (server, thread, port) once it answers."""
    import urllib.request

    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and thread.is_alive():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return server, thread, port
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the server on port {port} did not start")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) another process has used so far (Linux /proc)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary_ms(rows) -> float:
    """Mean CPU ms (this thread's) of `summarize` on the bench's request rows (bytes, as served)."""
    from mmops.monitor.summary import summarize

    as_bytes = [{"text": r["text"], "image": Path(r["image"]).read_bytes(), "audio": Path(r["audio"]).read_bytes()}
                for _, r in rows.iterrows()]
    for row in as_bytes[:5]:
        summarize(row)
    start = time.thread_time()
    for _ in range(3):
        for row in as_bytes:
            summarize(row)
    return 1000 * (time.thread_time() - start) / (3 * len(as_bytes))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6, help="interleaved rounds per server (default 6)")
    ap.add_argument("--requests", type=int, default=60, help="sequential requests per round for latency")
    ap.add_argument("--throughput-requests", type=int, default=96, help="requests per round at concurrency N")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--samples", type=int, default=200, help="avdigits samples to train the bench model on")
    ap.add_argument("--model-dir", type=Path, help="an existing model folder (skips training; needs --data)")
    ap.add_argument("--data", type=Path, help="a dataset folder for the request inputs")
    args = ap.parse_args()

    from mmops.config.monitor import PredictionLogConfig
    from mmops.serve.app import create_app
    from mmops.serve.reloader import LocalDirSource
    from mmops.serve.settings import ServeSettings

    with tempfile.TemporaryDirectory(prefix="mmops-bench-monitor-") as tmp:
        root = Path(tmp)
        if args.model_dir:
            if args.data is None:
                raise SystemExit("--data is required with --model-dir")
            model_dir, data_dir = args.model_dir, args.data
        else:
            from bench.bench_quantize import train_demo

            start = time.perf_counter()
            model_dir, _ = train_demo(root, args.samples, 1)
            data_dir = root / "data"
            print(f"setup: trained the demo model in {time.perf_counter() - start:.0f}s", file=sys.stderr)
        rows = test_rows(Path(data_dir), 64)
        bodies = [json_body(r) for _, r in rows.iterrows()]

        apps = {}
        for mode, enabled in (("on", True), ("off", False)):
            log = PredictionLogConfig(enabled=enabled, dir=str(root / "predictions"))
            settings = ServeSettings(poll_interval_s=0, token="", prediction_log=log)
            apps[mode] = create_app(settings, LocalDirSource(model_dir, name="bench"))
        servers = {mode: start_server(app) for mode, app in apps.items()}
        lat: dict[str, list[float]] = {"on": [], "off": []}
        tput: dict[str, list[float]] = {"on": [], "off": []}
        cpu: dict[str, float] = {"on": 0.0, "off": 0.0}  # this process's CPU seconds while each one serves
        try:
            for mode in ("on", "off"):  # warm both: first calls pay lazy initialisation
                latency(servers[mode][2], bodies, 1, warmup=20)
            plog = apps["on"].state.serve["log"]
            plog.flush(60)
            writer_start = process_cpu(plog.writer_pid)
            for r in range(args.rounds):
                for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
                    port = servers[mode][2]
                    started = time.process_time()
                    lat[mode] += latency(port, bodies, args.requests, warmup=3)
                    tput[mode].append(throughput(port, bodies, args.concurrency, args.throughput_requests))
                    cpu[mode] += time.process_time() - started
            started = time.process_time()
            plog.flush(60)  # what is still queued is part of the cost
            cpu["on"] += time.process_time() - started
            writer_cpu = process_cpu(plog.writer_pid) - writer_start
            stats = plog.stats()
        finally:
            for server, thread, _ in servers.values():
                server.should_exit = True
            for _, thread, _ in servers.values():
                thread.join(30)
        per_row = summary_ms(rows)

    p50 = {m: 1000 * statistics.median(v) for m, v in lat.items()}
    rate = {m: statistics.median(v) for m, v in tput.items()}
    lat_ratio, tput_ratio, cpu_ratio = p50["on"] / p50["off"], rate["on"] / rate["off"], cpu["on"] / cpu["off"]
    requests = args.rounds * (args.requests + 3 + args.throughput_requests + args.concurrency)  # warm-ups too
    per_request = {m: 1000 * c / requests for m, c in cpu.items()}
    total_ratio = (cpu["on"] + writer_cpu) / cpu["off"]
    writer_ms = 1000 * writer_cpu / requests
    print(f"{args.rounds} interleaved rounds; latency: {len(lat['on'])} requests per server, throughput: "
          f"{args.throughput_requests} requests per round at concurrency {args.concurrency}")
    print(f"p50 latency, 1 instance: log on {p50['on']:.1f} ms, off {p50['off']:.1f} ms -> {lat_ratio:.3f} "
          f"[goal <= 1.05: {'met' if lat_ratio <= 1.05 else 'NOT met'}]")
    print(f"throughput: log on {rate['on']:.1f}/s, off {rate['off']:.1f}/s -> {tput_ratio:.3f} "
          f"[goal >= 0.95: {'met' if tput_ratio >= 0.95 else 'NOT met'}]")
    print(f"CPU per request, this process (client + server): log on {per_request['on']:.1f} ms, off "
          f"{per_request['off']:.1f} ms -> {cpu_ratio:.3f}  (steadier than wall time on a busy machine)")
    print(f"CPU per request with the log's writer process (nice 19): {per_request['on'] + writer_ms:.1f} ms "
          f"({writer_ms:.1f} ms in the writer) -> {total_ratio:.3f} of log off")
    print(f"summary features: {per_row:.2f} ms CPU per row (in the writer process); log wrote {stats['rows']} rows, "
          f"dropped {stats['dropped']}")
    record(BENCH, "serve p50 latency, batch 1: log on ÷ off", lat_ratio, "ratio", "<= 1.05",
           f"{p50['on']:.1f} vs {p50['off']:.1f} ms, {len(lat['on'])} requests each, {args.rounds} interleaved rounds")
    record(BENCH, f"serve throughput (concurrency {args.concurrency}): log on ÷ off", tput_ratio, "ratio", ">= 0.95",
           f"{rate['on']:.1f} vs {rate['off']:.1f} instances/s; {stats['rows']} rows logged, "
           f"{stats['dropped']} dropped")
    record(BENCH, "CPU per request in the serving process (client + server): log on ÷ off", cpu_ratio, "ratio",
           "<= 1.05", f"{per_request['on']:.1f} vs {per_request['off']:.1f} ms")
    record(BENCH, "CPU per request incl. the log's writer process: log on ÷ off", total_ratio, "ratio", "",
           f"{per_request['on'] + writer_ms:.1f} ({writer_ms:.1f} in the writer, nice 19) vs "
           f"{per_request['off']:.1f} ms")
    record(BENCH, "summary features per request row (writer process, CPU)", per_row, "ms", "",
           "text + image + audio demo row: decode bounded, thumbnail, first 5 s of audio")


if __name__ == "__main__":
    main()
