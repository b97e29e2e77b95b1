"""Benchmark the data contract: `python bench/bench_validate.py [--rows 3000] [--kind photo|tiny] [--crossover]`.

Builds a dataset of N rows, each with its own image and WAV (files are never shared: sharing across
splits is leakage). `photo` (default): 224x224 photo-like RGB JPEGs and 1-5 s WAVs, half 16 kHz
mono, half 44.1 kHz stereo; `tiny`: 8x8 grey PNGs and 0.2 s 16 kHz WAVs (the cheapest files, where
a worker process is hardest to pay back). Then, in this process:

- validates it with the file checks on 2 processes, on the default (`validate.workers: auto`) and
  on 1 (in-process), interleaved, best of R each; a pool is started cold in every run, so its
  start-up is in the figure. Records 2 workers ÷ 1 worker and default ÷ 1 worker (file-check speed);
- times the default file checks on a quarter, a half and all of the files: cost per file, to show
  how cost grows with rows;
- measures the CPU cores this session gets (busy processes, CPU ÷ wall time) before and after: where
  other sessions keep the cores busy, no worker count beats one process and the figures say so;
- with --crossover, times 1 vs 2 workers on the first 50, 100, ... files (cold pool each time):
  where 2 processes start to pay (what `AUTO_FILES_PER_WORKER` in mmops/config/validate.py is set from).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
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
from mmops.config.validate import AUTO_FILES_PER_WORKER, usable_cpus  # noqa: E402
from mmops.data.hashing import dataset_hash  # noqa: E402
from mmops.validate import ValidateConfig, validate_dataset  # noqa: E402
from mmops.validate.files import check_jobs  # noqa: E402

LABELS = ("cat", "dog", "bird", "frog", "horse")
SPLITS = ("train", "val", "test")


def _photo(rng: np.random.Generator, side: int) -> Image.Image:
    """Photo-like: a smooth random colour field (bicubic from 6x6) with texture and sensor noise."""
    base = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), "RGB").resize((side, side), Image.BICUBIC)
    arr = np.asarray(base, dtype=np.float32) + rng.normal(0.0, 7.0, (side, side, 1))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _clip(rng: np.random.Generator, seconds: float, rate: int, channels: int) -> np.ndarray:
    """A tone over noise, (frames, channels)."""
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.2 * np.sin(2 * np.pi * rng.uniform(150, 900) * t) + 0.05 * rng.standard_normal(len(t))
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float32)


def _write_rows(args: tuple[Path, str, int, int]) -> list[dict]:
    """Rows [start, stop) of the dataset, media written (run in a forked worker: numpy and PIL only)."""
    root, kind, start, stop = args
    records = []
    for i in range(start, stop):
        rng = np.random.default_rng([7, i])
        sid = f"s{i:06d}"
        if kind == "tiny":
            image, ext = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L"), "png"
            wave, rate = _clip(rng, 0.2, 16_000, 1), 16_000
        else:
            image, ext = _photo(rng, 224), "jpg"
            rate, channels = (16_000, 1) if i % 2 == 0 else (44_100, 2)
            wave = _clip(rng, rng.uniform(1.0, 5.0), rate, channels)
        image.save(root / "images" / f"{sid}.{ext}", **({"quality": 90} if ext == "jpg" else {}))
        buf = io.BytesIO()
        sf.write(buf, wave, rate, subtype="PCM_16", format="WAV")
        (root / "audio" / f"{sid}.wav").write_bytes(buf.getvalue())
        r = i % 10
        label = LABELS[(i // 10) % len(LABELS)]
        records.append({"sample_id": sid, "split": "train" if r < 8 else SPLITS[r - 7], "label": label,
                        "text": f"a {label}, sample {i}", "image": f"images/{sid}.{ext}", "audio": f"audio/{sid}.wav"})
    return records


def build(root: Path, rows: int, kind: str) -> None:
    """`rows` samples, each with its own image and WAV, 80/10/10 split, on every CPU."""
    (root / "images").mkdir(parents=True)
    (root / "audio").mkdir()
    step = 100
    parts = [(root, kind, s, min(rows, s + step)) for s in range(0, rows, step)]
    with multiprocessing.get_context("fork").Pool(usable_cpus()) as pool:  # nothing threaded yet: fork is safe
        records = [r for part in pool.map(_write_rows, parts) for r in part]
    pd.DataFrame(records).to_csv(root / "manifest.csv", index=False)


def jobs_of(data: Path, rows: int | None = None) -> list[tuple[str, str, str]]:
    """The file checks' jobs for the first `rows` rows (image cells, then audio cells, as check_files orders them)."""
    df = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False).head(rows)
    return [(str((data / cell).resolve()), cell, col) for col in ("image", "audio") for cell in df[col]]


def _spin(seconds: float) -> float:
    """Busy for `seconds` of wall time; returns the CPU seconds this process got meanwhile."""
    end, cpu = time.perf_counter() + seconds, time.process_time()
    while time.perf_counter() < end:
        pass
    return time.process_time() - cpu


def cores_available(seconds: float = 1.0) -> float:
    """CPU cores this session gets right now: one busy process per usable CPU, CPU time ÷ wall time.
    Below the CPU count, other work holds the cores (the kernel shares CPU between sessions, not
    processes, where autogroup is on), and no number of workers can go faster than this."""
    n = usable_cpus()
    with multiprocessing.get_context("spawn").Pool(n) as pool:
        return sum(pool.map(_spin, [seconds] * n)) / seconds


def cpu_checks(jobs: list, cfg: ValidateConfig, workers: int) -> tuple[float, float, float]:
    """(wall s, CPU s of this process, CPU s of its worker processes) for the file checks."""
    import resource

    def kids() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    k0, c0, t = kids(), time.process_time(), time.perf_counter()
    check_jobs(jobs, cfg, workers)
    wall, own = time.perf_counter() - t, time.process_time() - c0
    reap()  # the pool is shut: its workers exit, and their CPU is counted
    return wall, own, kids() - k0


def reap() -> None:
    """Wait for the last pool's workers to exit, so they take no CPU from the next measurement."""
    while multiprocessing.active_children():
        time.sleep(0.05)


def timed_checks(jobs: list, cfg: ValidateConfig, workers: int) -> float:
    t = time.perf_counter()
    check_jobs(jobs, cfg, workers)
    secs = time.perf_counter() - t
    reap()
    return secs


def crossover(data: Path, n_rows: int, cfg: ValidateConfig, repeats: int) -> None:
    """1 vs 2 workers on the first 25, 50, ... rows (an image and a clip each), a cold pool each time:
    prints where 2 processes start to pay."""
    print("\ncrossover: file checks on the first n files, 1 vs 2 workers (cold pool), best of", repeats)
    print(f"  {'files':>6} {'1 worker':>10} {'2 workers':>10} {'speed-up':>9}")
    first = None
    rows = 25
    while rows <= n_rows:
        jobs = jobs_of(data, rows)
        t1 = t2 = float("inf")
        for _ in range(repeats):
            t2 = min(t2, timed_checks(jobs, cfg, 2))
            t1 = min(t1, timed_checks(jobs, cfg, 1))
        print(f"  {len(jobs):6d} {t1:9.3f}s {t2:9.3f}s {t1 / t2:8.2f}x", flush=True)
        if t1 / t2 >= 1.0 and first is None:
            first = len(jobs)
        elif t1 / t2 < 1.0:
            first = None
        rows *= 2
    print(f"  2 workers at least as fast from {first} files on (auto: {AUTO_FILES_PER_WORKER} files per worker)"
          if first else "  2 workers never caught up in this range")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=6_000)
    ap.add_argument("--kind", choices=("photo", "tiny"), default="photo")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs per setting; best kept")
    ap.add_argument("--crossover", action="store_true", help="also find where 2 workers start to pay")
    ap.add_argument("--dir", type=Path, default=None, help="build here and keep it (default: a temp dir)")
    args = ap.parse_args()

    root = args.dir or Path(tempfile.mkdtemp(prefix="mmops-bench-validate-"))
    data = root / "dataset"
    try:
        t = time.perf_counter()
        if not (data / "manifest.csv").exists():
            build(data, args.rows, args.kind)
        n_bytes = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        media = ("224x224 RGB JPEG, 1-5 s WAV (16 kHz mono / 44.1 kHz stereo)" if args.kind == "photo"
                 else "8x8 grey PNG, 0.2 s 16 kHz WAV")
        print(f"dataset: {args.rows} rows, {2 * args.rows} media files ({media}), {n_bytes / 1e6:.0f} MB, "
              f"built in {time.perf_counter() - t:.1f} s; {usable_cpus()} usable CPUs, load average {load:.1f}")

        t = time.perf_counter()
        import great_expectations  # noqa: F401  # paid once per process; kept out of the timings below

        print(f"great_expectations import: {time.perf_counter() - t:.1f} s (once per process)")
        cores = [cores_available()]
        print(f"CPU cores this session gets now: {cores[0]:.2f} of {usable_cpus()}")

        settings: list[int | str] = [1, "auto", 2]
        best: dict[int | str, dict[str, float]] = {}
        reports = {}
        for _ in range(args.repeats):
            for workers in settings:
                report = validate_dataset(data, None, ValidateConfig(workers=workers))
                reap()
                assert report.passed, report.summary()
                reports[workers] = report
                if workers not in best or report.timings["files"] < best[workers]["files"]:
                    best[workers] = dict(report.timings)
        same = {w: (r.model_dump(include={"failures", "rules", "notes", "data_hash", "n_files", "n_bytes"}))
                for w, r in reports.items()}
        assert same[2] == same[1] == same["auto"], "reports differ between worker settings"

        t = time.perf_counter()
        plain = dataset_hash(data)
        t_hash = time.perf_counter() - t
        assert plain == reports[1].data_hash

        cores.append(cores_available())
        n_rows, n_files = reports[1].n_rows, reports[1].n_files
        auto = reports["auto"].file_workers
        t1, t2, ta = best[1]["files"], best[2]["files"], best["auto"]["files"]
        tn = best["auto"]
        print(f"\nvalidate_dataset, default workers (auto -> {auto}), best of {args.repeats}:")
        print(f"  total      {tn['total']:7.2f} s   {n_rows / tn['total']:9.0f} rows/s")
        print(f"  table (GE) {tn['table_ge']:7.2f} s   {n_rows / tn['table_ge']:9.0f} rows/s")
        print(f"  files      {ta:7.2f} s   {n_files / ta:9.0f} files/s "
              f"({reports['auto'].files_in_workers} of {n_files} in worker processes in the last run)")
        print(f"  hash       {tn['hash']:7.2f} s   (reusing the file checks' digests; dataset_hash alone: {t_hash:.2f} s)")
        print(f"file checks: 1 worker {t1:.2f} s ({n_files / t1:.0f} files/s), 2 workers {t2:.2f} s "
              f"({n_files / t2:.0f} files/s, {reports[2].files_in_workers} files in the worker process), "
              f"auto ({auto}) {ta:.2f} s")
        print(f"speed-up 2 workers vs 1: {t1 / t2:.2f}x; default vs 1: {t1 / ta:.2f}x; CPU cores this session got "
              f"before / after: {cores[0]:.2f} / {cores[1]:.2f} of {usable_cpus()}")

        # cost against rows: the default on a quarter, a half and all of the files (best of R each)
        cfg = ValidateConfig()
        per_file = {}
        for frac in (4, 2, 1):
            part = jobs_of(data, n_rows // frac)  # the first rows: the same mix of images and clips
            w = cfg.resolved_workers(len(part))
            secs = timed_checks(part, cfg, w)
            per_file[frac] = secs / len(part)
            print(f"  {n_rows // frac:6d} rows, {len(part):6d} files: {secs:6.2f} s, {1e3 * per_file[frac]:.3f} ms "
                  f"per file (auto -> {w})")
        growth = per_file[1] / per_file[4]
        print(f"cost per file, all files vs a quarter: {growth:.2f}x (1.0: cost grows linearly with rows)")

        # CPU accounting: contention changes wall time, not the work; where this session gets fewer
        # cores than it has, the CPU the pool adds is what a worker costs
        jobs = jobs_of(data)
        cpu = {w: cpu_checks(jobs, cfg, w) for w in (1, 2)}
        (w1, c1, _), (w2, c2, k2) = cpu[1], cpu[2]
        print(f"CPU: 1 worker {c1:.2f} s (wall {w1:.2f} s); 2 workers {c2 + k2:.2f} s = this process {c2:.2f} s "
              f"+ worker {k2:.2f} s (start-up included; wall {w2:.2f} s); CPU 2 ÷ 1: {(c2 + k2) / c1:.2f}; "
              f"on 2 idle cores that is {c1 / max(c2, k2):.2f}x")

        what = (f"{n_rows} rows, {n_files} files ({args.kind}), {usable_cpus()} CPUs, this session got "
                f"{min(cores):.2f}-{max(cores):.2f} cores")
        record("validate", "validation throughput", n_rows / tn["total"], "rows/s", "",
               f"{what}; default workers (auto -> {auto}); {n_files / ta:.0f} files/s")
        record("validate", "file checks, 2 workers ÷ 1 worker (speed-up)", t1 / t2, "ratio", ">= 1.3",
               f"{what}; 1 worker {t1:.2f} s, 2 workers {t2:.2f} s (pool started cold, best of {args.repeats})")
        record("validate", "file checks, default (auto) ÷ 1 worker (speed-up)", t1 / ta, "ratio", ">= 1.0",
               f"{what}; auto -> {auto} workers, {ta:.2f} s")
        record("validate", "file-check CPU time, 2 workers ÷ 1 worker", (c2 + k2) / c1, "ratio", "",
               f"{what}; 1 worker {c1:.2f} s CPU; 2 workers: this process {c2:.2f} s + worker {k2:.2f} s "
               f"(its start-up included); the busier process {max(c2, k2):.2f} s: {c1 / max(c2, k2):.2f}x on 2 idle cores")
        record("validate", "file-check cost per file, all rows ÷ a quarter", growth, "ratio", "~1 (linear)",
               f"{n_rows // 4} vs {n_rows} rows, default workers")
        if args.crossover:
            crossover(data, n_rows, cfg, args.repeats)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
