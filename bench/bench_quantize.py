"""Benchmark the dynamic int8 variant: `python bench/bench_quantize.py [--samples N] [--epochs N]`.

Trains the demo's model (params.yaml: frozen MiniLM text encoder, small CNNs; by default on 900
avdigits samples, about 2 minutes; `--samples 1797` is the whole demo set) in a temp folder, or takes an existing model
(`--model-dir artifacts/model --features artifacts/features`, e.g. after `make demo`), quantises
every nn.Linear to int8 (mmops/compress/quantize.py, the register stage's code) and measures in
this one process:
  - test accuracy drop, fp32 - int8 (goal <= 0.01, the default `quantize.max_accuracy_drop`);
  - serialized weight size ratio, int8 / fp32 (goal < 0.75: MiniLM's word embeddings, about half
    its weights, and the CNNs stay fp32);
  - p50 per-sample latency ratios at batch 1 and batch 64, int8 / fp32, whole forward pass with
    the text encoder, timed interleaved (goal < 1).
Timings move with whatever else runs on the machine's cores; the ratio is measured in one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._report import record  # noqa: E402
from mmops.env import configure_tool_env  # noqa: E402

configure_tool_env()
BENCH = "quantize"


def train_demo(root: Path, n_samples: int | None, epochs: int | None) -> tuple[Path, Path]:
    """Demo data -> validate -> preprocess -> train with params.yaml; (model dir, features dir)."""
    from mmops import stages
    from mmops.catalog import Catalog
    from mmops.params_file import load_params

    overrides = {
        "paths.data": root / "data", "paths.reports": root / "reports", "paths.features": root / "features",
        "paths.model": root / "model", "paths.metrics": root / "metrics", "paths.cache": root / "cache",
    }
    overrides |= {"demo.n_samples": n_samples} if n_samples else {}
    overrides |= {"train.epochs": epochs} if epochs else {}
    params = load_params(REPO / "params.yaml", [f"{k}={v}" for k, v in overrides.items()])
    paths = Catalog.from_paths(params.paths)
    stages.demo_data(params, paths)
    stages.validate(params, paths)
    stages.preprocess(params, paths)
    stages.train(params, paths)
    return paths.model, paths.features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=900, help="avdigits samples (default 900; the demo has 1797)")
    ap.add_argument("--epochs", type=int, help="default: params.yaml train.epochs (early stopping applies)")
    ap.add_argument("--model-dir", type=Path, help="an existing model folder (skips training)")
    ap.add_argument("--features", type=Path, help="its features folder (with test.pt)")
    args = ap.parse_args()

    from mmops.compress.quantize import quantize_and_compare
    from mmops.config import QuantizeConfig

    with tempfile.TemporaryDirectory(prefix="mmops-bench-quantize-") as tmp:
        root = Path(tmp)
        if args.model_dir:
            model_dir, features = args.model_dir, args.features or args.model_dir.parent / "features"
            source = str(model_dir)
        else:
            start = time.perf_counter()
            model_dir, features = train_demo(root, args.samples, args.epochs)
            source = (f"params.yaml, {args.samples or 'all'} avdigits samples, {args.epochs or 'default'} epochs "
                      f"(trained in {time.perf_counter() - start:.0f} s)")
        report = quantize_and_compare(model_dir, features, QuantizeConfig(), root / "int8")

    print(report.markdown())
    detail = (f"{source}; n_test {report.n_test}; accuracy fp32 {report.accuracy_fp32:.4f} int8 "
              f"{report.accuracy_int8:.4f}; torch threads {report.torch_threads}")
    record(BENCH, "int8 accuracy drop (fp32 - int8)", report.accuracy_drop, "", "<= 0.01", detail)
    record(BENCH, "int8 / fp32 weight size", report.size_ratio, "ratio", "< 0.75",
           f"{report.size_int8_bytes / 1e6:.1f} MB vs {report.size_fp32_bytes / 1e6:.1f} MB")
    record(BENCH, "int8 / fp32 p50 latency, batch 1", report.latency_ratio, "ratio", "< 1",
           f"{report.latency_int8_p50_ms:.2f} ms vs {report.latency_fp32_p50_ms:.2f} ms, interleaved")
    record(BENCH, f"int8 / fp32 p50 latency per sample, batch {report.latency_batch}", report.latency_batch_ratio,
           "ratio", "< 1", f"{report.latency_int8_batch_ms:.2f} ms vs {report.latency_fp32_batch_ms:.2f} ms, interleaved")


if __name__ == "__main__":
    main()
