"""Benchmark the Prefect orchestration: `python bench/bench_flow.py [--samples 900] [--epochs 6]`.

With a real `prefect server start` already up on 127.0.0.1 and MLflow in a temp SQLite file,
on a generated avdigits set with a one-layer text model, sized so that the stages take 20 s or
more in-process on 2 cores (a representative run, not a toy whose cost is all fixed):
  - flow / in-process: the retrain flow (tasks, stage records, artifacts, concurrency slot) ÷
    the same stage functions called one after another in this process (goal <= 1.10), each the
    best of two runs from empty outputs, interleaved; and the
    fixed cost in seconds (flow - in-process), which does not grow with the data;
  - warm / cold: the flow again with nothing changed (every stage `Cached`, read back from its
    outputs) ÷ its first run (goal <= 0.05).
Imports are warmed before anything is timed. Both pipelines start from empty output and
feature-cache folders and register under different model names (no champion to re-score).
The figures move with whatever else runs on the machine: repeat and compare.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ROOT = Path(tempfile.mkdtemp(prefix="mmops-bench-flow-"))
os.environ["PREFECT_HOME"] = str(ROOT / "prefect")
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{ROOT / 'mlflow.db'}"

from bench._report import record  # noqa: E402
from mmops.env import configure_tool_env  # noqa: E402

configure_tool_env(ROOT)

VOCAB = "[PAD] [UNK] [CLS] [SEP] [MASK] it is a the even odd number digit prime not one two three four five six seven eight nine zero".split()


def tiny_text_model(path: Path) -> Path:
    """A one-layer BERT with a word-level tokenizer, saved locally (no hub access)."""
    from transformers import BertConfig, BertModel, BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizer(str(path / "vocab.txt")).save_pretrained(path)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(path)
    return path


def overrides(root: Path, text_model: Path, data: Path, samples: int, epochs: int, name: str) -> list[str]:
    values = {
        "paths.data": data, "paths.reports": root / "reports", "paths.features": root / "features",
        "paths.model": root / "model", "paths.metrics": root / "metrics", "paths.cache": root / "cache",
        "model.text.options.pretrained": text_model, "model.width": 32, "model.head.hidden": 64,
        "train.epochs": epochs, "train.batch_size": 16, "train.lr": 0.005, "train.patience": epochs,
        "demo.n_samples": samples, "registry.model_name": name, "quantize.enabled": "false",
    }
    return [f"{k}={v}" for k, v in values.items()]


def in_process(params, data: Path) -> None:
    from mmops import stages
    from mmops.catalog import Catalog

    paths = Catalog.from_paths(params.paths, data=data)
    stages.validate(params, paths)
    stages.preprocess(params, paths)
    stages.train(params, paths)
    stages.evaluate(params, paths)
    stages.register(params, paths)


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=900)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()

    import shutil
    import socket

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from mmops import stages
    from mmops.catalog import Catalog
    from mmops.orchestrate.local import command, started
    from mmops.params_file import load_params
    from mmops.processes import wait_healthy

    text_model = tiny_text_model(ROOT / "tiny-bert")
    data = ROOT / "data"
    base = load_params(None, overrides(ROOT / "warmup", text_model, data, args.samples, args.epochs, "bench-warmup"))
    base_paths = Catalog.from_paths(base.paths)
    stages.demo_data(base, base_paths)
    stages.validate(base, base_paths)  # warm imports (Great Expectations, media decoders) before timing
    import mlflow.pyfunc  # noqa: F401

    import mmops.evaluate  # noqa: F401
    import mmops.registry.register  # noqa: F401
    import mmops.train  # noqa: F401

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv, env = command("prefect-server", host="127.0.0.1", port=str(port))
    api = f"http://127.0.0.1:{port}/api"
    with started("prefect server", argv, env | {"PREFECT_UI_ENABLED": "false"}, ROOT / "server.log") as server:
        wait_healthy(f"{api}/health", server, timeout=180, log=ROOT / "server.log")
        with temporary_settings(updates={PREFECT_API_URL: api}):
            from mmops.orchestrate.retrain import retrain

            def flow_run(root: Path) -> None:
                retrain(params_path=None, overrides=overrides(root, text_model, data, args.samples, args.epochs,
                                                              f"bench-{root.name}"), data_dir=str(data))

            from prefect import flow

            flow(name="bench-warmup")(lambda: None)()  # the Prefect client's own first-call costs
            def baseline_run(tag: str) -> float:
                return timed(lambda: in_process(load_params(None, overrides(
                    ROOT / tag, text_model, data, args.samples, args.epochs, f"bench-{tag}")), data))

            # interleaved, each side the best of two from empty outputs (the same estimator on both
            # sides); the first in-process run also pays the process's first-use costs
            first = baseline_run("inproc-1")
            cold_first = timed(lambda: flow_run(ROOT / "flow-1"))
            baseline = min(first, baseline_run("inproc-2"))
            cold = min(cold_first, timed(lambda: flow_run(ROOT / "flow")))
            warm = timed(lambda: flow_run(ROOT / "flow"))
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            for service in (APILogWorker, EventsWorker):
                service.drain_all(timeout=30, at_exit=False)
    detail = f"{args.samples} samples, {args.epochs} epochs; in-process {baseline:.1f}s, flow cold {cold:.1f}s, warm {warm:.2f}s"
    print(f"[flow] {detail}", flush=True)
    if baseline < 20:
        print(f"[flow] note: the in-process pipeline took {baseline:.1f} s (< 20 s): raise --samples or --epochs",
              flush=True)
    record("flow", "flow / in-process stages", cold / baseline, "ratio", "<= 1.10", detail)
    record("flow", "fixed cost per run (flow - in-process)", cold - baseline, "s", "", detail)
    record("flow", "warm rerun / cold run", warm / cold, "ratio", "<= 0.05", detail)
    shutil.rmtree(ROOT, ignore_errors=True)


if __name__ == "__main__":
    main()
