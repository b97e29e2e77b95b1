"""Benchmark the data contract: `python bench/bench_validate.py [--rows 10000] [--workers 8]`.

Builds a dataset of N rows, each with its own 8x8 PNG and 0.2 s 16 kHz WAV (files are never
shared: sharing across splits is leakage), validates it, and prints rows/s, files/s and the
file-check speed-up of N worker threads over 1 worker, measured in the same process.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import record  # noqa: E402
from mmops.data.hashing import dataset_hash  # noqa: E402
from mmops.validate import ValidateConfig, validate_dataset  # noqa: E402

CLASSES = [str(d) for d in range(10)]
SPLITS = ("train", "val", "test")


def build(root: Path, rows: int, side: int = 8, seconds: float = 0.2, seed: int = 0) -> None:
    """rows samples: distinct random side x side grayscale PNGs and noise WAVs, 80/10/10 split."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "audio").mkdir()
    records = []
    for i in range(rows):
        sid = f"s{i:06d}"
        Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8), "L").save(root / "images" / f"{sid}.png")
        buf = io.BytesIO()
        noise = (0.1 * rng.standard_normal(int(16_000 * seconds))).astype(np.float32)
        sf.write(buf, noise, 16_000, subtype="PCM_16", format="WAV")
        (root / "audio" / f"{sid}.wav").write_bytes(buf.getvalue())
        r = i % 10
        records.append({"sample_id": sid, "split": "train" if r < 8 else SPLITS[r - 7],
                        "label": str((i // 10) % 10), "text": f"sample {i} of digit {(i // 10) % 10}",
                        "image": f"images/{sid}.png", "audio": f"audio/{sid}.wav"})
    pd.DataFrame(records).to_csv(root / "manifest.csv", index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=ValidateConfig().workers)
    ap.add_argument("--repeats", type=int, default=2, help="alternating N-worker / 1-worker runs; best kept")
    ap.add_argument("--side", type=int, default=8, help="PNG width = height in pixels")
    ap.add_argument("--seconds", type=float, default=0.2, help="WAV duration")
    ap.add_argument("--dir", type=Path, default=None, help="build here and keep it (default: a temp dir)")
    args = ap.parse_args()

    root = args.dir or Path(tempfile.mkdtemp(prefix="mmops-bench-validate-"))
    data = root / "dataset"
    try:
        t = time.perf_counter()
        if not (data / "manifest.csv").exists():
            build(data, args.rows, args.side, args.seconds)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"dataset: {args.rows} rows, {2 * args.rows} media files ({args.side}x{args.side} PNG, "
              f"{args.seconds} s WAV), built in {time.perf_counter() - t:.1f} s; "
              f"{os.cpu_count()} CPUs, load average {load:.1f}")

        t = time.perf_counter()
        import great_expectations  # noqa: F401  # paid once per process; kept out of the timings below

        print(f"great_expectations import: {time.perf_counter() - t:.1f} s (once per process)")

        best: dict[int, dict[str, float]] = {}
        report = None
        for _ in range(args.repeats):
            for workers in (args.workers, 1):
                report = validate_dataset(data, CLASSES, ValidateConfig(workers=workers))
                assert report.passed, report.summary()
                tm = report.timings
                if workers not in best or tm["files"] < best[workers]["files"]:
                    best[workers] = dict(tm)
        assert report is not None

        t = time.perf_counter()
        plain = dataset_hash(data)
        t_hash = time.perf_counter() - t
        assert plain == report.data_hash

        n_rows, n_files = report.n_rows, report.n_files
        tn, t1 = best[args.workers], best[1]
        print(f"\nvalidate_dataset, {args.workers} workers (best of {args.repeats}):")
        print(f"  total      {tn['total']:7.2f} s   {n_rows / tn['total']:9.0f} rows/s")
        print(f"  table (GE) {tn['table_ge']:7.2f} s   {n_rows / tn['table_ge']:9.0f} rows/s")
        print(f"  files      {tn['files']:7.2f} s   {n_files / tn['files']:9.0f} files/s")
        print(f"  hash       {tn['hash']:7.2f} s   (reusing the file checks' digests; "
              f"dataset_hash alone: {t_hash:.2f} s)")
        print(f"file checks, 1 worker: {t1['files']:.2f} s = {n_files / t1['files']:.0f} files/s")
        print(f"ratio files/s {args.workers} workers vs 1 worker: {t1['files'] / tn['files']:.2f}x")
        record("validate", "validation throughput", n_rows / tn["total"], "rows/s", "",
               f"{n_rows} rows, {n_files} files, {args.workers} workers; {n_files / tn['files']:.0f} files/s")
        record("validate", f"file checks, {args.workers} workers ÷ 1 worker", t1["files"] / tn["files"], "ratio")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
