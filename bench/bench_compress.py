"""Benchmark the distilled and pruned variants: `python bench/bench_compress.py [--samples N]`.

Trains the demo's model (params.yaml: frozen MiniLM text encoder with attention pooling, small
CNNs; by default on 900 avdigits samples) in a temp folder, or takes an existing one (`--model-dir
artifacts/model --features artifacts/features`), then builds both variants with params.yaml's
`distill:` and `prune:` settings through the register stage's code (mmops/compress/distill.py,
mmops/compress/prune.py) and measures each against the fp32 model in this one process:
  - test accuracy drop, fp32 - variant (goal: within the default bound, 0.02 distilled, 0.01 pruned);
  - serialized weight size ratio, variant / fp32 (the whole state dict, frozen MiniLM included);
  - the gzipped model-folder checkpoint ratio (where pruning's zeros show);
  - p50 per-sample latency ratios at batch 1 and 64, variant / fp32, timed interleaved through the
    shared prediction path (goal for the student: <= 0.5, i.e. at least 2x faster);
  - the seconds each variant adds to `register`.
Timings move with whatever else runs on the machine's cores; each ratio is measured in one run.
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
from bench.bench_quantize import train_demo  # noqa: E402
from mmops.env import configure_tool_env  # noqa: E402

configure_tool_env()
BENCH = "compress"


def figures(report, seconds: float, source: str) -> None:
    """One report's figures, named by its variant."""
    v = report.variant
    verdict = "registered" if report.accepted else "NOT registered"
    record(BENCH, f"{v}: accuracy drop (fp32 - {v})", report.accuracy_drop, "", f"<= {report.max_accuracy_drop}",
           f"{verdict} under the default bound; accuracy fp32 {report.accuracy_fp32:.4f} {v} "
           f"{report.accuracy_variant:.4f}, n_test {report.n_test}; {source}")
    record(BENCH, f"{v} / fp32 weight size", report.size_ratio, "ratio", "",
           f"{report.size_variant_bytes / 1e6:.2f} MB vs {report.size_fp32_bytes / 1e6:.2f} MB, whole state dict")
    record(BENCH, f"{v} / fp32 gzipped folder checkpoint", report.gzip_ratio, "ratio", "",
           f"{report.gzip_variant_bytes / 1e6:.2f} MB vs {report.gzip_fp32_bytes / 1e6:.2f} MB (frozen MiniLM referenced, not stored)")
    record(BENCH, f"{v} / fp32 p50 latency, batch 1", report.latency_ratio, "ratio", "<= 0.5" if v == "distilled" else "",
           f"{report.latency_variant_p50_ms:.2f} ms vs {report.latency_fp32_p50_ms:.2f} ms, interleaved")
    record(BENCH, f"{v} / fp32 p50 latency per sample, batch {report.latency_batch}", report.latency_batch_ratio, "ratio",
           "", f"{report.latency_variant_batch_ms:.2f} ms vs {report.latency_fp32_batch_ms:.2f} ms, interleaved")
    record(BENCH, f"{v}: seconds added to register", seconds, "s", "",
           ", ".join(f"{k} {val}" for k, val in report.details.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=900, help="avdigits samples (default 900; the demo has 1797)")
    ap.add_argument("--epochs", type=int, help="teacher epochs (default: params.yaml, early stopping applies)")
    ap.add_argument("--model-dir", type=Path, help="an existing model folder (skips training)")
    ap.add_argument("--features", type=Path, help="its features folder")
    ap.add_argument("--cache", type=Path, help="its cache folder (frozen-encoder embeddings; default: a temp folder)")
    args = ap.parse_args()

    from mmops.compress.distill import distill_and_compare
    from mmops.compress.prune import prune_and_compare
    from mmops.params_file import load_params

    params = load_params(REPO / "params.yaml")
    with tempfile.TemporaryDirectory(prefix="mmops-bench-compress-") as tmp:
        root = Path(tmp)
        if args.model_dir:
            model_dir, features = args.model_dir, args.features or args.model_dir.parent / "features"
            cache, source = args.cache or root / "cache", str(args.model_dir)
        else:
            start = time.perf_counter()
            model_dir, features = train_demo(root, args.samples, args.epochs)
            cache = root / "cache"
            source = f"params.yaml, {args.samples} avdigits samples (teacher trained in {time.perf_counter() - start:.0f} s)"
        reports = []
        for build, cfg, name in ((distill_and_compare, params.distill, "distilled"), (prune_and_compare, params.prune, "pruned")):
            start = time.perf_counter()
            report = build(model_dir, features, cache, cfg, root / f"model_{name}")
            reports.append((report, time.perf_counter() - start))
    for report, seconds in reports:
        print(report.markdown())
    for report, seconds in reports:
        figures(report, seconds, source)


if __name__ == "__main__":
    main()
