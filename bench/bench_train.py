"""Benchmark training: `python bench/bench_train.py [--n 768] [--minilm-n 320] [--repeats 2]`.

1. Trainer overhead: `TrainRecipe` samples/s ÷ a bare PyTorch loop (`for x, y in loader:
   opt.zero_grad(); loss.backward(); opt.step()`) on the same model (gru_text + small CNN image +
   log-mel CNN audio, all trainable, concat fusion; the bare loop trains a copy of the trainer's
   freshly built model), the same optimizer and the very batches the trainer's epoch trained on
   (its plan; the bare loop indexes them in memory, the trainer reads them from the shards).
   Measured for the whole trainer epoch (train + validation + checkpoints) and for its training
   steps alone, with the trainer epoch's time split into parts in the detail.
2. Frozen-encoder cache: epoch time with the frozen real all-MiniLM-L6-v2's embeddings from the
   cross-run cache (lookup included) ÷ without (MiniLM runs in every step), same loop.

Trainer and bare epochs alternate (the bare epoch runs between two trainer epochs, outside their
timed span, with none of the trainer's work in flight), so each pair sees the same machine load;
the median pair ratio is reported. A trainer epoch's span runs from the end of the previous
validation to the end of its own: the previous epoch's saves (snapshots; the files are written
by a helper thread during this span, and any wait for it at the end is counted), then its
training steps and validation. Synthetic featurized data (random images and log-mels, real
tokenizer on short sentences), so nothing is preprocessed.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import record  # noqa: E402

from mmops.catalog import Catalog  # noqa: E402
from mmops.config import Params  # noqa: E402
from mmops.features.frozen import embedded_view  # noqa: E402
from mmops.features.shards import SplitView, write_split  # noqa: E402
from mmops.models.batch import index  # noqa: E402
from mmops.models import MultimodalClassifier, tokenizer_source  # noqa: E402
from mmops.params_file import load_params  # noqa: E402
from mmops.train.recipe import TrainRecipe, seed_everything  # noqa: E402

BENCH = "train"
REPO = Path(__file__).resolve().parents[1]
# the synthetic splits below have the demo's shapes, so the params that `auto` would resolve are pinned
DEMO_SHAPES = ["classes=[0,1,2,3,4,5,6,7,8,9]", "model.modalities=[text,image,audio]", "features.text.max_length=32",
               "features.image.size=16", "features.image.mode=grey", "features.audio.max_seconds=1.5",
               "features.audio.max_clip_seconds=1.5"]
WORDS = "zero one two three four five six seven eight nine".split()


def synthetic_split(params: Params, n: int, seed: int) -> dict:
    """A featurized split as `mmops preprocess` writes it: tokens of short clue sentences, random
    16x16 images and 40-mel log-mels, every modality present, 10 classes."""
    from transformers import AutoTokenizer

    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(params.model))
    texts = [f"it is {'an even' if int(y) % 2 == 0 else 'an odd'} number, {WORDS[(int(y) + i) % 10]} is not it"
             for i, y in enumerate(labels)]
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=params.features.text.max_length,
                    return_tensors="pt")
    frames = int(params.features.audio.max_seconds * params.features.audio.sample_rate) // params.features.audio.hop_length + 1
    return {
        "text": {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]},
        "image": torch.randn(n, 1, params.features.image.size, params.features.image.size, generator=g),
        "audio": {"mel": torch.randn(n, 1, params.features.audio.n_mels, frames, generator=g),
                  "frames": torch.full((n,), frames, dtype=torch.long)},
        "present": {m: torch.ones(n, dtype=torch.bool) for m in ("text", "image", "audio")},
        "labels": labels,
        "sample_ids": [f"s{i:05d}" for i in range(n)],
    }


class Batches(Dataset):
    """Indexable by a batch of indices: a DataLoader with a BatchSampler yields whole batches."""

    def __init__(self, data: dict) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data["labels"])

    def __getitem__(self, idx: list[int]):
        batch = index(self.data, torch.as_tensor(idx))
        return batch, batch["labels"]


def bare_epoch(model: torch.nn.Module, opt: torch.optim.Optimizer, data: dict, batch_size: int, seed: int,
               batches: list[torch.Tensor] | None = None) -> float:
    """One epoch of the plainest loop, over `batches` (rows of `data`, in memory) or a seeded
    shuffle; returns wall seconds."""
    ds = Batches(data)
    sampler = batches if batches is not None else BatchSampler(
        RandomSampler(ds, generator=torch.Generator().manual_seed(seed)), batch_size, drop_last=False)
    loader = DataLoader(ds, sampler=sampler, batch_size=None)
    model.train()
    start = time.perf_counter()
    for x, y in loader:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


@torch.no_grad()
def bare_validation(model: torch.nn.Module, data: dict, batch_size: int) -> float:
    """The plainest validation pass (eval-mode forward over `data` in batches, argmax); returns wall seconds."""
    model.eval()
    start = time.perf_counter()
    n = len(data["labels"])
    for s in range(0, n, batch_size):
        model(index(data, torch.arange(s, min(s + batch_size, n)))).argmax(1)
    return time.perf_counter() - start


PARTS = ("steps: compute", "steps: waiting for data", "validation", "saves (training thread)",
         "waiting for the writer", "other")


class TimedRecipe(TrainRecipe):
    """The trainer as is, timed in spans that each hold one epoch of its work: the previous
    epoch's saves (the files are written by the writer thread during this span), this epoch's
    training steps, its snapshot (copied by the writer thread during validation) and validation,
    and any wait for the writer still busy at the end. `between(epoch)` runs between spans,
    untimed, with nothing of the trainer's in flight (the bare loop's epoch: both sides see the
    same machine load). Each span's parts go to `parts`; the writer thread's busy time to
    `writer_seconds` (wall, CPU)."""

    def __init__(self, *args, between: Callable[[int], None], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.between = between
        self.epoch_seconds: list[float] = []
        self.step_seconds: list[float] = []
        self.parts: list[dict[str, float]] = []
        self.writer_seconds: list[tuple[float, float]] = []
        self._part: dict[str, float] = defaultdict(float)
        self._mark = 0.0
        self._epoch = 0

    def setup(self) -> None:
        super().setup()
        self.loader = _WaitTimed(self.loader, self._part)

    def train(self) -> dict:
        self._mark = time.perf_counter()
        summary = super().train()
        self.writer.close()
        return summary

    def _timed(self, part: str, fn: Callable, *args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._part[part] += time.perf_counter() - start

    def _train_one_epoch(self, epoch: int) -> float:
        self._epoch = epoch
        start = time.perf_counter()
        loss = super()._train_one_epoch(epoch)
        self.step_seconds.append(time.perf_counter() - start)
        self._part["steps: compute"] += self.step_seconds[-1] - self._part["steps: waiting for data"]
        return loss

    def evaluate_split(self, data, drop=frozenset()) -> dict:  # once per epoch, in the loop: the span ends here
        val = self._timed("validation", super().evaluate_split, data, drop)
        self._timed("waiting for the writer", self.writer.wait)
        self.epoch_seconds.append(time.perf_counter() - self._mark)
        named = sum(v for k, v in self._part.items() if k != "other")
        self.parts.append({**{k: self._part[k] for k in PARTS[:-1]}, "other": self.epoch_seconds[-1] - named})
        self._part.clear()
        self.between(self._epoch)
        self._mark = time.perf_counter()
        return val

    def snapshot(self):
        return self._timed("saves (training thread)", super().snapshot)

    def save_checkpoint(self, epoch: int, val: dict, trained) -> None:
        self._timed("saves (training thread)", super().save_checkpoint, epoch, val, trained)

    def save_last(self, epoch: int, trained) -> None:
        self._timed("saves (training thread)", super().save_last, epoch, trained)

    def _on_writer(self, fn: Callable, *args):
        """`fn` on the writer thread, its wall and CPU seconds added to `writer_seconds`."""
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args)
        finally:
            self.writer_seconds.append((time.perf_counter() - start, time.thread_time() - cpu))

    def _clone_trained(self) -> dict:
        return self._on_writer(super()._clone_trained)

    def _write_checkpoint(self, *args) -> None:
        self._on_writer(super()._write_checkpoint, *args)

    def _write_last(self, *args) -> None:
        self._on_writer(super()._write_last, *args)


class _WaitTimed:
    """The trainer's loader, with the time its consumer waits for each batch added to `part`."""

    def __init__(self, loader, part: dict[str, float]) -> None:
        self.loader, self.part = loader, part

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        items = iter(self.loader)
        while True:
            start = time.perf_counter()
            item = next(items, None)
            self.part["steps: waiting for data"] += time.perf_counter() - start
            if item is None:
                return
            yield item


def trainer_overhead(root: Path, n: int, epochs: int) -> None:
    params = load_params(None, DEMO_SHAPES + [
        f"paths.cache={root / 'cache'}", "model.text.name=gru_text", "model.width=64", "model.head.hidden=128",
        f"train.epochs={epochs}", "train.batch_size=64", "train.patience=1000", "train.device=cpu",
    ])
    features = root / "features"
    features.mkdir(parents=True)
    train_set, val_set = synthetic_split(params, n, 0), synthetic_split(params, n // 8, 1)
    write_split(features / "train", train_set, rows_per_shard=1024)
    write_split(features / "val", val_set, rows_per_shard=1024)
    B = params.train.batch_size

    bare: list[float] = []
    bare_val: list[float] = []

    def between(epoch: int) -> None:
        bare.append(bare_epoch(model, opt, train_set, B, epoch, recipe._global_batches(epoch)))
        bare_val.append(bare_validation(model, val_set, B))

    # trainer span, bare epoch, trainer span, ...: each pair runs under the same machine load. The
    # bare loop trains a copy of the trainer's freshly set-up model (same weights) with the same
    # optimizer on the very batches the trainer's epoch trained on (its plan), read from memory.
    paths = replace(Catalog.from_paths(params.paths), features=features, model=root / "model")
    recipe = TimedRecipe(params, paths, between=between)
    recipe.setup()
    model = copy.deepcopy(recipe.model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=params.train.lr,
                            weight_decay=params.train.weight_decay)
    recipe.train()
    measured = slice(1, None)  # the first pair is a warm-up (and its span holds no saves)
    pairs = list(zip(recipe.epoch_seconds, recipe.step_seconds, bare))[measured]
    parts = recipe.parts[measured]
    epoch_ratio = statistics.median(b / t for t, _, b in pairs)  # samples/s trainer / bare = bare s / trainer s
    steps_ratio = statistics.median(b / s for _, s, b in pairs)
    # the same, against a bare loop that also validates (plain forward passes): what the trainer
    # adds beyond the work any loop that selects on validation does
    with_val_ratio = statistics.median((b + v) / t for (t, _, b), v in zip(pairs, bare_val[measured]))
    bare_s = statistics.median(b for _, _, b in pairs)
    # where the trainer's extra time goes: each part's mean per epoch, against the bare epoch
    breakdown = "; ".join(f"{k} {1e3 * statistics.fmean(p[k] for p in parts):.0f} ms "
                          f"({100 * statistics.fmean(p[k] for p in parts) / bare_s:.1f} %)" for k in PARTS)
    writer_wall, writer_cpu = (sum(w[i] for w in recipe.writer_seconds) / max(len(recipe.epoch_seconds), 1) for i in (0, 1))
    best = {"trainer epoch": min(p[0] for p in pairs), "trainer steps": min(p[1] for p in pairs),
            "bare loop": min(p[2] for p in pairs)}
    detail = (f"{n} train / {n // 8} val samples, batch {B}, gru_text+small_cnn_image+mel_cnn_audio, concat, CPU, "
              f"{torch.get_num_threads()} torch thread(s); median of {len(pairs)} interleaved epoch pairs "
              f"(trainer epoch: the previous epoch's saves + steps + validation); best samples/s "
              + ", ".join(f"{k} {n / v:.0f}" for k, v in best.items())
              + f". Trainer epoch per part (mean; % of the bare epoch's {1e3 * bare_s:.0f} ms): {breakdown}. "
              f"Writer thread, behind the loop: {1e3 * writer_wall:.0f} ms per epoch ({1e3 * writer_cpu:.0f} ms CPU). Bare validation pass "
              f"{1e3 * statistics.median(bare_val[measured]):.0f} ms")
    print(detail)
    record(BENCH, "trainer epoch / bare loop (samples/s, incl. validation + checkpoints)",
           epoch_ratio, "ratio", ">= 0.95", detail)
    record(BENCH, "trainer steps / bare loop (samples/s)", steps_ratio, "ratio", ">= 0.95", detail)
    record(BENCH, "trainer epoch / bare loop + bare validation pass (samples/s)", with_val_ratio, "ratio", ">= 0.95",
           detail)


def minilm_cache(root: Path, n: int, repeats: int) -> None:
    params = load_params(REPO / "params.yaml", DEMO_SHAPES + ["model.width=64", "model.head.hidden=128", "train.batch_size=32"])
    assert params.model.text.name == "hf_text" and params.model.text.options.get("sha256"), "expects pinned MiniLM"
    data = synthetic_split(params, n, 2)
    cache = root / "embeddings"
    B = params.train.batch_size

    seed_everything(params.seed)
    model = MultimodalClassifier(params.model, len(params.classes), features=params.features)  # loads the real MiniLM (hash checked)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    split = write_split(root / "split", data, rows_per_shard=1024).parent
    start = time.perf_counter()
    embedded_view(model, SplitView(split), cache)  # the first run: compute and store
    cold = time.perf_counter() - start

    best_with, best_without, best_lookup = float("inf"), float("inf"), float("inf")
    for r in range(repeats):
        start = time.perf_counter()
        embedded = embedded_view(model, SplitView(split), cache).load()  # a later run: cache hit, read whole
        lookup = time.perf_counter() - start
        best_lookup = min(best_lookup, lookup)
        best_with = min(best_with, lookup + bare_epoch(model, opt, embedded, B, r))
        best_without = min(best_without, bare_epoch(model, opt, data, B, r))  # MiniLM in every step

    detail = (f"{n} samples, batch {B}, real all-MiniLM-L6-v2 frozen + small CNN image + log-mel CNN audio, CPU; "
              f"epoch {best_with:.2f} s with cache (lookup {best_lookup:.2f} s) vs {best_without:.2f} s without; "
              f"filling the cache (first run) {cold:.2f} s (best of {repeats})")
    print(detail)
    record(BENCH, "epoch with frozen-MiniLM embedding cache / without", best_with / best_without, "ratio", "< 1", detail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512, help="training samples for the trainer-overhead runs")
    ap.add_argument("--epochs", type=int, default=10, help="trainer epochs (each followed by a bare one; the first pair is a warm-up)")
    ap.add_argument("--minilm-n", type=int, default=320, help="samples for the MiniLM cache runs")
    ap.add_argument("--repeats", type=int, default=3, help="MiniLM cache runs (best kept)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: least noise on a shared machine; both sides use the same)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load average {load:.1f}, torch {torch.__version__}")
    root = Path(tempfile.mkdtemp(prefix="mmops-bench-train-"))
    try:
        t = time.perf_counter()
        trainer_overhead(root / "overhead", args.n, args.epochs)
        print(f"(trainer overhead: {time.perf_counter() - t:.0f} s)")
        t = time.perf_counter()
        minilm_cache(root / "minilm", args.minilm_n, args.repeats)
        print(f"(MiniLM cache: {time.perf_counter() - t:.0f} s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
