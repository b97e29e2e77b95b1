"""Stage `train`: one recipe, read top to bottom: setup -> train -> save_checkpoint.

Run it with `mmops train` (one process, CPU or one GPU) or
`torchrun --nproc_per_node=N -m mmops.cli train` (DDP; gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import json
import random
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from sklearn.metrics import accuracy_score, f1_score
from torch.nn.parallel import DistributedDataParallel

from mmops.config import Params
from mmops.features.tensors import index, to_device
from mmops.models import MultimodalClassifier
from mmops.models.classifier import with_frozen_embeddings
from mmops.train.checkpoint import CHECKPOINT, export_text_backbone
from mmops.train.distributed import DistInfo, cleanup, init_distributed, pick_device

console = Console(stderr=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TrainRecipe:
    """Trains a MultimodalClassifier on featurized splits with early stopping on val macro-F1."""

    def __init__(self, params: Params, features_dir: Path, out_dir: Path) -> None:
        self.params = params
        self.cfg = params.train
        self.features_dir = Path(features_dir)
        self.out_dir = Path(out_dir)
        self.history: list[dict] = []

    # -- setup -----------------------------------------------------------------------------
    def setup(self) -> None:
        seed_everything(self.params.seed)
        self.dist: DistInfo = init_distributed("cuda" if self._wants_cuda() else "cpu")
        self.device = pick_device(self.cfg.device, self.dist)
        self.train_set = torch.load(self.features_dir / "train.pt", weights_only=True)
        self.val_set = torch.load(self.features_dir / "val.pt", weights_only=True)

        self.model = MultimodalClassifier(self.params.model, len(self.params.classes)).to(self.device)
        self.train_set = with_frozen_embeddings(self.model, self.train_set)
        self.val_set = with_frozen_embeddings(self.model, self.val_set)
        self.ddp = (
            DistributedDataParallel(self.model, find_unused_parameters=True) if self.dist.enabled else self.model
        )
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

        self.use_amp = self.device.type == "cuda" and self.cfg.amp
        self.amp_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)

    def _wants_cuda(self) -> bool:
        return self.cfg.device == "cuda" or (self.cfg.device == "auto" and torch.cuda.is_available())

    def _autocast(self):
        return torch.autocast("cuda", dtype=self.amp_dtype) if self.use_amp else nullcontext()

    # -- train -----------------------------------------------------------------------------
    def train(self) -> dict:
        best_f1, best_epoch, stale = -1.0, -1, 0
        for epoch in range(1, self.cfg.epochs + 1):
            started = time.perf_counter()
            train_loss = self._train_one_epoch(epoch)
            val = self.evaluate_split(self.val_set)
            row = {"epoch": epoch, "train_loss": train_loss, **{f"val_{k}": v for k, v in val.items()}}
            row["seconds"] = round(time.perf_counter() - started, 3)
            self.history.append(row)
            if self.dist.is_main:
                console.print(
                    f"epoch {epoch:>3}  loss {train_loss:.4f}  val_loss {val['loss']:.4f}  "
                    f"val_acc {val['accuracy']:.4f}  val_f1 {val['macro_f1']:.4f}  ({row['seconds']:.1f}s)"
                )
            if val["macro_f1"] > best_f1:
                best_f1, best_epoch, stale = val["macro_f1"], epoch, 0
                self.save_checkpoint(epoch, val)
            else:
                stale += 1
                if stale >= self.cfg.patience:
                    if self.dist.is_main:
                        console.print(f"early stop: no val improvement for {stale} epochs")
                    break
        return {"best_epoch": best_epoch, "best_val_macro_f1": best_f1, "epochs_run": len(self.history)}

    def _train_one_epoch(self, epoch: int) -> float:
        self.ddp.train()
        order = torch.randperm(len(self.train_set["labels"]), generator=torch.Generator().manual_seed(self.params.seed + epoch))
        per_rank = len(order) // self.dist.world_size
        order = order[self.dist.rank * per_rank : (self.dist.rank + 1) * per_rank]
        total, seen = 0.0, 0
        for start in range(0, len(order), self.cfg.batch_size):
            batch = to_device(index(self.train_set, order[start : start + self.cfg.batch_size]), self.device)
            with self._autocast():
                loss = F.cross_entropy(self.ddp(batch), batch["labels"])
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            total += loss.item() * len(batch["labels"])
            seen += len(batch["labels"])
        return total / max(seen, 1)

    @torch.no_grad()
    def evaluate_split(self, data: dict, drop: frozenset[str] = frozenset()) -> dict:
        logits = predict_logits(self.model, data, self.device, self.cfg.batch_size, drop, self._autocast)
        labels = data["labels"]
        preds = logits.argmax(1)
        return {
            "loss": F.cross_entropy(logits, labels).item(),
            "accuracy": float(accuracy_score(labels, preds)),
            "macro_f1": float(f1_score(labels, preds, average="macro", zero_division=0)),
        }

    # -- save ------------------------------------------------------------------------------
    def save_checkpoint(self, epoch: int, val: dict) -> None:
        if not self.dist.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "state_dict": self.model.state_dict(),
            "params": self.params.dump(),
            "classes": self.params.classes,
            "epoch": epoch,
            "val": val,
        }
        tmp = self.out_dir / (CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.out_dir / CHECKPOINT)

    def finish(self, summary: dict) -> None:
        if self.dist.is_main:
            export_text_backbone(self.model, self.params, self.out_dir)
            (self.out_dir / "history.json").write_text(json.dumps({"summary": summary, "epochs": self.history}, indent=2))
        cleanup(self.dist)


@torch.no_grad()
def predict_logits(model, data: dict, device, batch_size: int, drop=frozenset(), autocast=nullcontext) -> torch.Tensor:
    """Logits for a whole featurized split, in batches, in eval mode, on CPU at the end."""
    model.eval()
    data = with_frozen_embeddings(model, data, batch_size)
    n = len(data["labels"]) if "labels" in data else next(iter(data["present"].values())).shape[0]
    out = []
    for start in range(0, n, batch_size):
        batch = to_device(index(data, torch.arange(start, min(start + batch_size, n))), device)
        with autocast():
            out.append(model(batch, drop=drop).float().cpu())
    return torch.cat(out)


def train(features_dir: Path, out_dir: Path, params: Params) -> Path:
    """Train on `features_dir/{train,val}.pt`; write `out_dir/checkpoint.pt` and `history.json`."""
    recipe = TrainRecipe(params, features_dir, out_dir)
    recipe.setup()
    summary = recipe.train()
    recipe.finish(summary)
    return Path(out_dir)
