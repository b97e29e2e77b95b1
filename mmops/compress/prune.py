"""Magnitude pruning (`torch.nn.utils.prune`) with a short fine-tune, made permanent before saving.

Pruned: the weights of every trainable Conv2d and Linear (the CNNs, projections, attention pooling
and head), except the classifier's last layer, whose rows are the classes. Frozen pretrained
encoders are left whole: they are not trained here, and their cached embeddings stay valid.

- `l1_unstructured`: one global L1 threshold over all those weights (`prune.global_unstructured`);
- `ln_structured`: per layer, the output channels (Conv2d) or rows (Linear) of least L2 norm
  (`prune.ln_structured`, dim 0).

The fine-tune is the training recipe (mmops/train/recipe.py) started from the fp32 weights with the
masks on (the pruned entries get no gradient), early-stopped on validation macro-F1; then
`prune.remove` folds each mask into a plain `weight`, and the folder holds no `weight_orig` or mask.

Zeros do not shrink a dense tensor: neither kind makes the saved tensors smaller or a dense CPU
kernel faster. Structured pruning is not sliced into smaller layers here (GroupNorm groups, the
next layer's inputs and the projection's fan-in would all have to follow); the report shows what
the zeros buy: the gzipped checkpoint, and the latency, measured.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

from mmops.atomic import atomic_path
from mmops.catalog import CHECKPOINT, Catalog
from mmops.compress.variant import VariantReport, compare_variant
from mmops.config import Params, PruneConfig
from mmops.inference.model_dir import lean_checkpoint, load_checkpoint, load_model_dir, write_base_weights
from mmops.train.recipe import TrainRecipe


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, "weight") of every trainable Conv2d and Linear, less the head's last layer (the classes)."""
    head = getattr(model, "head", None)
    classes = head[-1] if isinstance(head, nn.Sequential) else None
    return [(m, "weight") for m in model.modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m is not classes and m.weight.requires_grad]


def apply_pruning(model: nn.Module, cfg: PruneConfig) -> list[tuple[nn.Module, str]]:
    """Put the masks on (a forward pre-hook computes weight = weight_orig * weight_mask); the pruned targets."""
    targets = prunable(model)
    if cfg.method == "l1_unstructured":
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=cfg.amount)
    else:
        for module, name in targets:
            prune.ln_structured(module, name, amount=cfg.amount, n=2, dim=0)
    return targets


def make_permanent(targets: list[tuple[nn.Module, str]]) -> None:
    """`prune.remove` on each target: weight = weight_orig * mask as a plain parameter; no hook, no mask."""
    for module, name in targets:
        if prune.is_pruned(module):
            prune.remove(module, name)


def sparsity(targets: list[tuple[nn.Module, str]]) -> tuple[float, float]:
    """(share of zero weights, share of all-zero output channels / rows) over the targets."""
    zeros = total = dead = rows = 0
    for module, name in targets:
        w = getattr(module, name).detach()
        zeros, total = zeros + int((w == 0).sum()), total + w.numel()
        dead, rows = dead + int((w.flatten(1) == 0).all(1).sum()), rows + w.shape[0]
    return zeros / max(total, 1), dead / max(rows, 1)


class PruneRecipe(TrainRecipe):
    """The training recipe, started from the fp32 weights with the pruning masks on; the saved
    checkpoint is made permanent (`prune.remove`) when training finishes."""

    def __init__(self, params: Params, paths: Catalog, start: dict, cfg: PruneConfig) -> None:
        super().__init__(params, paths)
        self.start, self.prune = start, cfg

    def setup(self) -> None:
        super().setup()
        with torch.no_grad():  # in place: the optimizer keeps the parameters it holds (they become weight_orig)
            self.model.load_state_dict(self.start)
        self.targets = apply_pruning(self.model, self.prune)

    def finish(self, summary: dict) -> None:
        super().finish(summary)  # the best checkpoint is on disk
        if self.dist.is_main:
            self.write_permanent()

    def write_permanent(self) -> None:
        """Reload the best checkpoint into the masked model, fold the masks in and save it again."""
        path = self.paths.model / CHECKPOINT
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = self.model.load_state_dict(ckpt["state_dict"], strict=False)
        if unexpected or set(missing) - self.frozen:
            raise RuntimeError(f"{path}: does not fit the pruned model ({unexpected[:3]}, {sorted(set(missing) - self.frozen)[:3]})")
        make_permanent(self.targets)
        weights, rows = sparsity(self.targets)
        ckpt["state_dict"], bases = lean_checkpoint(self.model, self.model.state_dict())
        ckpt["pruning"] = {"method": self.prune.method, "amount": self.prune.amount, "sparsity": weights,
                           "zero_rows": rows}
        write_base_weights(self.paths.model, bases)
        with atomic_path(path) as tmp:
            torch.save(ckpt, tmp)


def prune_model(model_dir: Path, features_dir: Path, cache_dir: Path, cfg: PruneConfig, out_dir: Path) -> Path:
    """Prune and fine-tune the model in `model_dir` on `features_dir`; write the pruned folder to `out_dir`."""
    start = load_model_dir(model_dir).model.state_dict()
    trained = Params.model_validate(load_checkpoint(model_dir)["params"])  # pretrained sources as trained
    train = trained.train.model_copy(update={"epochs": cfg.epochs, "lr": cfg.lr, "patience": cfg.epochs,
                                             "min_epochs": cfg.epochs, "warmup_epochs": 0})
    params = trained.model_copy(update={"train": train})
    paths = replace(Catalog.from_paths(params.paths), features=Path(features_dir), model=Path(out_dir),
                    cache=Path(cache_dir))
    recipe = PruneRecipe(params, paths, start, cfg)
    recipe.setup()
    summary = recipe.train()
    recipe.finish(summary)
    return Path(out_dir)


def prune_and_compare(model_dir: Path, features_dir: Path, cache_dir: Path, cfg: PruneConfig,
                      out_dir: Path) -> VariantReport:
    """Prune the model in `model_dir` into `out_dir` and compare the two on the test split."""
    prune_model(model_dir, features_dir, cache_dir, cfg, out_dir)
    pruned = load_model_dir(out_dir)  # what gets registered, loaded the way serving loads it
    weights, rows = sparsity(prunable(pruned.model))
    details = {"method": cfg.method, "amount": cfg.amount, "fine-tune epochs": cfg.epochs,
               "sparsity of pruned weights": round(weights, 4), "all-zero channels/rows": round(rows, 4)}
    title = f"Pruned variant ({cfg.method.replace('_', ' ')}, {cfg.amount:.0%})"
    return compare_variant("pruned", title, load_model_dir(model_dir), model_dir, pruned, out_dir, features_dir,
                           cfg.max_accuracy_drop, details)
