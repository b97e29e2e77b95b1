"""Stage `train`: one recipe, read top to bottom: setup -> train -> save_checkpoint.

Run it with `mmops train` (one process, CPU or one GPU) or
`torchrun --nproc_per_node=N -m mmops.cli train` (DDP; gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import time
from concurrent.futures import Future
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler

from mmops.atomic import atomic_path, atomic_write_json, remove_stale_temps
from mmops.catalog import CHECKPOINT, HISTORY_JSON, Catalog
from mmops.config import Params
from mmops.features.frozen import embedded_view
from mmops.features.shards import SplitView
from mmops.models.batch import to_device
from mmops.inference.model_dir import export_audio_backbone, export_text_backbone, lean_checkpoint, write_base_weights
from mmops.inference.predict import split_logits
from mmops.models import MultimodalClassifier
from mmops.models.augment import augment_batch, augmented_modalities
from mmops.train.background import ReadAhead, WriteBehind
from mmops.train.budget import BUDGET_KEYS, resolve_budget
from mmops.train.distributed import DistInfo, barrier, cleanup, init_distributed, pick_device

console = Console(stderr=True)
# the params sections that decide the training trajectory (paths, registry, gate, ... do not)
FINGERPRINT_SECTIONS = ("seed", "classes", "features", "model", "train")
TRAIN_SPLITS = ("train", "val")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_states() -> dict:
    """Every RNG the training loop draws from (dropout, modality dropout, augmentation), as
    tensors and plain values (loadable with `weights_only=True`)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))
    states = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def cloned(state):
    """`state` (nested dicts, lists and tuples of tensors and plain values, as state dicts are)
    with every tensor cloned: a snapshot that the next optimizer steps leave as it is."""
    if isinstance(state, torch.Tensor):
        return state.clone()
    if isinstance(state, dict):
        return {k: cloned(v) for k, v in state.items()}
    if type(state) in (list, tuple):
        return type(state)(cloned(v) for v in state)
    return state


def lr_lambda(steps_per_epoch: int, epochs: int, warmup_epochs: int, schedule: str):
    """Per-step LR multiplier: linear warm-up over `warmup_epochs`, then constant or cosine to 0."""
    warmup = warmup_epochs * steps_per_epoch
    total = max(epochs * steps_per_epoch, 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "cosine":
            progress = min((step - warmup) / max(total - warmup, 1), 1.0)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return factor


def resume_fingerprint(params: Params, splits: dict[str, SplitView]) -> str:
    """sha256 of what a resume state is only valid for: the params sections training reads (with
    `auto` resolved) and the content of the featurized splits it trains and selects on."""
    dumped = params.dump()
    dumped["features"].pop("store", None)  # how splits were sharded and by whom: the split digests cover it
    digest = hashlib.sha256(json.dumps({k: dumped[k] for k in FINGERPRINT_SECTIONS}, sort_keys=True).encode())
    for name, view in splits.items():
        digest.update(f"{name}\0{view.digest}\n".encode())
    return digest.hexdigest()


class PlannedBatches(Dataset):
    """Item `global_idx` (one global batch's row numbers): this rank's rows of it, read from the
    shards (in a DataLoader worker when `num_workers` > 0), and the global batch size the loss
    divides by."""

    def __init__(self, split: SplitView, world: int, rank: int) -> None:
        self.split, self.world, self.rank = split, world, rank

    def __getitem__(self, global_idx: torch.Tensor) -> tuple[dict, int]:
        return self.split.rows(global_idx.tensor_split(self.world)[self.rank]), len(global_idx)


class EpochPlan(Sampler):
    """The current epoch's global batches, in order; the recipe sets them before each epoch."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def planned_loader(
    split: SplitView, world: int, rank: int, workers: int, pin_memory: bool
) -> tuple[DataLoader | ReadAhead, EpochPlan]:
    """A loader of `PlannedBatches` driven by an `EpochPlan`. Workers start once per training run
    (persistent) from a fresh forkserver: forking the trainer itself, whose other threads may hold
    locks, is not safe. Without workers, on CPU, the next batch is read on a helper thread while
    this one trains (`ReadAhead`: the same batches in the same order); with pinned memory (CUDA)
    the loader stays on the training thread, whose device the pinning belongs to."""
    plan = EpochPlan()
    loader = DataLoader(
        PlannedBatches(split, world, rank), sampler=plan, batch_size=None, num_workers=workers,
        pin_memory=pin_memory, persistent_workers=workers > 0,
        multiprocessing_context="forkserver" if workers > 0 else None,
    )
    return (ReadAhead(loader) if workers == 0 and not pin_memory else loader), plan


def accuracy_and_macro_f1(labels: torch.Tensor, preds: torch.Tensor) -> tuple[float, float]:
    """Accuracy, and macro-F1 over the classes that occur in `labels` or `preds`: the values of
    scikit-learn's `accuracy_score` and `f1_score(average="macro", zero_division=0)` (the same
    float64 operations), from per-class counts, without their input checks (every epoch)."""
    y, p = labels.long().cpu().numpy(), preds.long().cpu().numpy()
    k = int(max(y.max(initial=0), p.max(initial=0))) + 1
    true, pred, hits = np.bincount(y, minlength=k), np.bincount(p, minlength=k), np.bincount(y[y == p], minlength=k)
    seen = (true + pred) > 0
    f1 = 2.0 * hits[seen].astype(np.float64) / (true[seen].astype(np.float64) + pred[seen].astype(np.float64))
    return float(np.mean(y == p)), float(np.nanmean(f1))


class TrainRecipe:
    """Trains a MultimodalClassifier on featurized splits with early stopping on val macro-F1."""

    def __init__(self, params: Params, paths: Catalog, resume: bool = False) -> None:
        self.params = params
        self.cfg = params.train
        self.paths = paths
        self.resume = resume
        self.history: list[dict] = []
        self.start_epoch, self.best_f1, self.best_epoch, self.stale, self.stopped = 1, -1.0, -1, 0, False
        self.writer = WriteBehind()  # checkpoint files are written behind the training thread, in order
        self._lean_known: tuple | None = None  # what `_lean` found the last time it compared

    # -- setup -----------------------------------------------------------------------------
    def setup(self) -> None:
        seed_everything(self.params.seed)
        self.dist: DistInfo = init_distributed("cuda" if self._wants_cuda() else "cpu")
        self.device = pick_device(self.cfg.device, self.dist)
        splits = {s: SplitView(self.paths.split(s)) for s in TRAIN_SPLITS}
        self.cfg, self.budget = resolve_budget(self.cfg, len(splits["train"]))
        self.params = self.params.model_copy(update={"train": self.cfg})  # the checkpoint keeps what ran
        self.fingerprint = resume_fingerprint(self.params, splits)
        if self.dist.is_main:
            console.print(f"training budget: {self.budget}")
            remove_stale_temps(self.paths.model)  # half-written files of a killed earlier attempt
            remove_stale_temps(self.paths.resume_state.parent)

        self.model = MultimodalClassifier(
            self.params.model, len(self.params.classes), features=self.params.features
        ).to(self.device)
        # frozen encoders run once per shard content, cached across runs; augmented inputs change every epoch
        cache = self.paths.embeddings
        augmented = augmented_modalities(self.cfg.augment, splits["train"].rows(torch.tensor([0])))
        self.train_set = self.training_view(embedded_view(self.model, splits["train"], cache, skip=augmented))
        self.val_set = embedded_view(self.model, splits["val"], cache)
        self.loader, self.plan = planned_loader(
            self.train_set, self.dist.world_size, self.dist.rank, self.cfg.num_workers, self.device.type == "cuda"
        )
        self.ddp = (
            DistributedDataParallel(self.model, find_unused_parameters=True) if self.dist.enabled else self.model
        )
        self.forward = torch.compile(self.ddp) if self.cfg.compile else self.ddp
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.steps_per_epoch = len(self._global_batches(1))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(self.steps_per_epoch, self.cfg.epochs, self.cfg.warmup_epochs, self.cfg.schedule)
        )

        self.use_amp = self.device.type == "cuda" and self.cfg.amp
        self.amp_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        # frozen parameters are loaded from their pretrained source at every setup: the resume state skips them
        self.frozen = {name for name, p in self.model.named_parameters() if not p.requires_grad}
        if self.resume and self.paths.resume_state.exists():
            self._resume()

    def _resume(self) -> None:
        """Continue from the resume state if it was written for these params and features; else
        remove it (another run's, or unreadable) and train from scratch."""
        path = self.paths.resume_state
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            refused = None if state.get("fingerprint") == self.fingerprint else "written for other params or features"
        except Exception as err:  # noqa: BLE001  a torn, foreign or pickled file is never trusted
            state, refused = None, f"unreadable ({type(err).__name__})"
        barrier(self.dist)  # every rank has decided before rank 0 may remove the file
        if refused is None:
            self._load_last(state)
        elif self.dist.is_main:
            path.unlink(missing_ok=True)
            console.print(f"resume state {path} refused and removed: {refused}; training from scratch", soft_wrap=True)

    def _load_last(self, state: dict) -> None:
        """Restore model, optimizer, scheduler, scaler, RNGs and loop state from the resume state."""
        missing, unexpected = self.model.load_state_dict(state["state_dict"], strict=False)
        if unexpected or set(missing) - self.frozen:
            raise RuntimeError(f"resume state {self.paths.resume_state} does not fit the model (missing "
                               f"{sorted(set(missing) - self.frozen)[:5]}, unexpected {unexpected[:5]}); delete it")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_states(state["rng"])
        self.history = state["history"]
        self.start_epoch = state["epoch"] + 1
        self.best_f1, self.best_epoch, self.stale = state["best_f1"], state["best_epoch"], state["stale"]
        self.stopped = state["stopped"]
        if self.dist.is_main:
            console.print(f"resumed from {self.paths.resume_state} after epoch {state['epoch']}", soft_wrap=True)

    def _wants_cuda(self) -> bool:
        return self.cfg.device == "cuda" or (self.cfg.device == "auto" and torch.cuda.is_available())

    def _autocast(self):
        return torch.autocast("cuda", dtype=self.amp_dtype) if self.use_amp else nullcontext()

    # -- train -----------------------------------------------------------------------------
    def train(self) -> dict:
        for epoch in range(self.start_epoch, self.cfg.epochs + 1):
            if self.stopped:
                break
            started = time.perf_counter()
            train_loss = self._train_one_epoch(epoch)
            trained = self.snapshot()  # copied behind the loop while validation runs (neither writes to it)
            val = self.evaluate_split(self.val_set)
            row = {"epoch": epoch, "train_loss": train_loss, **{f"val_{k}": v for k, v in val.items()}}
            row["lr"] = self.scheduler.get_last_lr()[0]
            row["seconds"] = round(time.perf_counter() - started, 3)
            self.history.append(row)
            if self.dist.is_main:
                console.print(
                    f"epoch {epoch:>3}  loss {train_loss:.4f}  val_loss {val['loss']:.4f}  "
                    f"val_acc {val['accuracy']:.4f}  val_f1 {val['macro_f1']:.4f}  ({row['seconds']:.1f}s)"
                )
            if val["macro_f1"] > self.best_f1:
                self.best_f1, self.best_epoch, self.stale = val["macro_f1"], epoch, 0
                self.save_checkpoint(epoch, val, trained)
            else:
                self.stale += 1
                if self.stale >= self.cfg.patience and epoch >= self.cfg.min_epochs:
                    if self.dist.is_main:
                        console.print(f"early stop: no val improvement for {self.stale} epochs")
                    self.stopped = True
            if self.epoch_done(row):
                self.stopped = True
            self.save_last(epoch, trained)
        return {
            "best_epoch": self.best_epoch,
            "best_val_macro_f1": self.best_f1,
            "epochs_run": len(self.history),
            "budget": self.budget,
            "train": self.cfg.model_dump(mode="json", include=set(BUDGET_KEYS)),
        }

    def _global_batches(self, epoch: int) -> list[torch.Tensor]:
        """The epoch's shuffled global batches (the same on every rank; seeded by seed + epoch).

        Under DDP each global batch is split across ranks, so N processes with per-rank batch
        B/N take the same optimizer steps as one process with batch B. A final batch smaller
        than the world size is dropped.
        """
        n = len(self.train_set)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.params.seed + epoch))
        batches = list(order.split(self.cfg.batch_size))
        return [b for b in batches if len(b) >= self.dist.world_size]

    def _train_one_epoch(self, epoch: int) -> float:
        self.ddp.train()
        world = self.dist.world_size
        total, seen = 0.0, 0
        self.plan.batches = self._global_batches(epoch)
        for batch, global_size in self.loader:
            batch = to_device(batch, self.device)
            if self.cfg.augment.enabled:
                batch = augment_batch(batch, self.cfg.augment)
            with self._autocast():
                # sum over my rows / global batch size, times world (DDP averages gradients over
                # ranks): the gradient is exactly the global batch's mean-loss gradient
                loss_sum = self.loss_sum(self.forward(batch), batch)
                loss = loss_sum * world / global_size
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.cfg.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.trainable, self.cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            total += loss_sum.item()
            seen += len(batch["labels"])
        return total / max(seen, 1)

    # Seams a recipe built on this one overrides: distillation adds the teacher's logits
    # (mmops/compress/distill.py), tuning prunes trials (mmops/experiments/tune.py).
    def training_view(self, split: SplitView) -> SplitView:
        """The training rows as the loader reads them."""
        return split

    def loss_sum(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """The batch's loss summed over its rows: cross-entropy on the hard labels."""
        return F.cross_entropy(logits, batch["labels"], reduction="sum")

    def epoch_done(self, row: dict) -> bool:
        """Called with each epoch's history row (val metrics included); True stops training here
        (mmops/experiments/tune.py prunes a trial this way)."""
        return False

    @torch.no_grad()
    def evaluate_split(self, data: SplitView, drop: frozenset[str] = frozenset()) -> dict:
        logits = split_logits(self.model, data, self.device, self.cfg.batch_size, (drop,), self._autocast)[drop]
        labels = data.column("labels")
        accuracy, macro_f1 = accuracy_and_macro_f1(labels, logits.argmax(1))
        return {"loss": F.cross_entropy(logits, labels).item(), "accuracy": accuracy, "macro_f1": macro_f1}

    # -- save ------------------------------------------------------------------------------
    # `self.writer` does the saving behind the training thread, in order: `snapshot` copies the
    # state an epoch's steps left while validation runs; each save hands the writer a file to
    # serialise, fsync and rename from that copy while the next epoch trains. `finish` waits for
    # the last one.
    def snapshot(self) -> Future | None:
        """The model, optimizer and scheduler state after this epoch's steps, being cloned on the
        writer thread (None on ranks that save nothing); `save_last` waits for it."""
        return self.writer.submit(self._clone_trained) if self.dist.is_main else None

    def _clone_trained(self) -> dict:
        model = self.model.state_dict()  # a fresh dict (it keeps the `_metadata` loading reads)
        for key in model.keys() - self.frozen:
            model[key] = model[key].clone()  # frozen parameters are never written to: shared
        return {"model": model, "optimizer": cloned(self.optimizer.state_dict()),
                "scheduler": cloned(self.scheduler.state_dict())}

    def save_checkpoint(self, epoch: int, val: dict, trained: Future) -> None:
        """The best model so far: `checkpoint.pt` in the model folder (what gets registered)."""
        if not self.dist.is_main:
            return
        meta = {"params": self.params.dump(), "classes": self.params.classes, "epoch": epoch, "val": val}
        self.writer.submit(self._write_checkpoint, trained, meta)

    def _write_checkpoint(self, trained: Future, meta: dict) -> None:
        self.paths.model.mkdir(parents=True, exist_ok=True)
        # frozen pretrained tensors identical to their source file are referenced by sha256
        # (`base_weights.json`), not stored: one copy per content hash instead of one per version
        state_dict, bases = self._lean(copy.copy(trained.result()["model"]))
        state = {"state_dict": state_dict, **meta}
        if bases:  # the reference first: a kill in between leaves a full checkpoint beside it (still loads)
            write_base_weights(self.paths.model, bases)
        with atomic_path(self.paths.model / CHECKPOINT) as tmp:
            torch.save(state, tmp)
        if not bases:
            write_base_weights(self.paths.model, bases)  # removes a stale reference

    def _lean(self, state_dict: dict) -> tuple[dict, dict]:
        """`lean_checkpoint(model, state_dict)`, reading the pretrained files once per run: while
        every frozen parameter is the one compared last time and unwritten since (same storage,
        same version counter, which every in-place write moves), the same keys are left out with
        the same references. Only frozen parameters are tracked so: if anything else was left out
        (a buffer, cloned into each snapshot), every save compares again."""
        frozen = {k: (state_dict[k].data_ptr(), state_dict[k]._version) for k in sorted(self.frozen & state_dict.keys())}
        if self._lean_known is not None and self._lean_known[0] == frozen:
            _, dropped, bases = self._lean_known
            for key in dropped:
                del state_dict[key]  # the snapshot is ours: its order and `_metadata` stay as lean_checkpoint keeps them
            return state_dict, bases
        lean, bases = lean_checkpoint(self.model, state_dict)
        dropped = [k for k in state_dict if k not in lean]
        self._lean_known = (frozen, dropped, bases) if set(dropped) <= self.frozen else None
        return lean, bases

    def save_last(self, epoch: int, trained: Future) -> None:
        """The resume state (`last.pt`): the full training state after `epoch`, for `resume`.

        It lives beside the model folder (`Catalog.resume_state`), never in it: the model folder
        is what gets registered, and the optimizer moments are no part of a served model."""
        if not self.dist.is_main:
            return
        trained.result()  # copied: the next epoch may change the weights and moments
        loop = {
            "scaler": self.scaler.state_dict(),
            "rng": rng_states(),
            "epoch": epoch,
            "best_f1": self.best_f1,
            "best_epoch": self.best_epoch,
            "stale": self.stale,
            "stopped": self.stopped,
            "history": list(self.history),
            "fingerprint": self.fingerprint,
        }
        self.writer.submit(self._write_last, trained, loop)

    def _write_last(self, trained: Future, loop: dict) -> None:
        state = trained.result()
        state = {
            "state_dict": {k: v for k, v in state["model"].items() if k not in self.frozen},
            "optimizer": state["optimizer"],
            "scheduler": state["scheduler"],
            **loop,
        }
        self.paths.resume_state.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.paths.resume_state) as tmp:
            torch.save(state, tmp)

    def finish(self, summary: dict) -> None:
        self.writer.close()  # every checkpoint and resume state is on disk before the history says the run ended
        if isinstance(self.loader, ReadAhead):
            self.loader.close()
        if self.dist.is_main:
            export_text_backbone(self.model, self.params, self.paths.model)
            export_audio_backbone(self.model, self.paths.model)
            atomic_write_json(self.paths.model / HISTORY_JSON, {"summary": summary, "epochs": self.history})
        cleanup(self.dist)


def train(params: Params, paths: Catalog, resume: bool = False) -> Path:
    """Train on `paths.features` (train and val splits); write the model folder `paths.model`
    (checkpoint and history; the resume state goes to `paths.resume_state`, beside it).

    `resume`: continue from the resume state `paths.resume_state` when there is one (same
    weights as an uninterrupted run).
    """
    recipe = TrainRecipe(params, paths, resume=resume)
    recipe.setup()
    summary = recipe.train()
    recipe.finish(summary)
    return paths.model
