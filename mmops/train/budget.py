"""`auto` training budget from the number of training rows: batch size, epochs, patience, and the
first epoch early stopping may end.

A few hundred rows at a large fixed batch give a few optimizer steps per epoch: a fixed epoch
count then stops long before an encoder trained from scratch leaves its plateau (a mel CNN
needs 100-200 steps on a pitch cue), and a fixed patience in epochs stops on noise. So the
budget is set in optimizer steps and converted to epochs for the rows at hand. Pinned values in
params are kept.
"""

from __future__ import annotations

import math

from mmops.config import AUTO, TrainConfig

TARGET_STEPS = 600  # optimizer steps an auto budget aims at
PATIENCE_STEPS = 120  # optimizer steps without val improvement before stopping
MIN_STEPS = 300  # no early stop before this many optimizer steps
BATCH_RANGE = (16, 64)
EPOCH_RANGE = (3, 300)
MIN_PATIENCE = 5
BUDGET_KEYS = ("batch_size", "epochs", "patience", "min_epochs")


def resolve_budget(cfg: TrainConfig, n_train: int) -> tuple[TrainConfig, str]:
    """`cfg` with `auto` batch size, epochs and patience made concrete for `n_train` rows, and a
    sentence saying what was chosen and why."""
    batch = cfg.batch_size
    if batch == AUTO:
        lo, hi = BATCH_RANGE
        batch = min(hi, max(lo, 2 ** int(math.log2(max(n_train // 8, 1)))))
    steps = max(math.ceil(n_train / batch), 1)
    epochs = cfg.epochs
    if epochs == AUTO:
        epochs = min(EPOCH_RANGE[1], max(EPOCH_RANGE[0], math.ceil(TARGET_STEPS / steps)))
    patience = cfg.patience
    if patience == AUTO:
        patience = max(MIN_PATIENCE, math.ceil(PATIENCE_STEPS / steps))
    min_epochs = cfg.min_epochs
    if min_epochs == AUTO:
        min_epochs = min(epochs, math.ceil(MIN_STEPS / steps))
    why = (
        f"{n_train} training rows: batch {batch}, {steps} steps/epoch, {epochs} epochs "
        f"({epochs * steps} steps), early stop after {patience} epochs without val improvement, "
        f"not before epoch {min_epochs}"
    )
    pinned = [k for k in BUDGET_KEYS if getattr(cfg, k) != AUTO]
    if pinned:
        why += f" ({', '.join(pinned)} pinned in params)"
    update = {"batch_size": batch, "epochs": epochs, "patience": patience, "min_epochs": min_epochs}
    return cfg.model_copy(update=update), why
