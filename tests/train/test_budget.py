"""The `auto` training budget: batch size, epochs and patience from the number of training rows."""

from __future__ import annotations

import pytest

from mmops.config import TrainConfig
from mmops.train.budget import PATIENCE_STEPS, TARGET_STEPS, resolve_budget


@pytest.mark.parametrize(
    ("rows", "batch", "epochs", "patience", "min_epochs"),
    [
        (10, 16, 300, 120, 300),     # one step per epoch: the epoch cap holds
        (63, 16, 150, 30, 75),
        (420, 32, 43, 9, 22),        # a few hundred rows: many more epochs than a fixed 30
        (1258, 64, 30, 6, 15),       # the demo's training rows: what params.yaml pinned before auto
        (100_000, 64, 3, 5, 1),      # large: a few epochs
    ],
)
def test_auto_budget_follows_the_rows(rows, batch, epochs, patience, min_epochs):
    cfg, why = resolve_budget(TrainConfig(), rows)
    assert (cfg.batch_size, cfg.epochs, cfg.patience, cfg.min_epochs) == (batch, epochs, patience, min_epochs)
    steps = -(-rows // batch)
    assert cfg.epochs * steps >= min(TARGET_STEPS, 300 * steps) or cfg.epochs == 3
    assert cfg.patience * steps >= min(PATIENCE_STEPS, 5 * steps)
    assert f"{rows} training rows" in why and f"batch {batch}" in why and "pinned" not in why
    assert f"not before epoch {min_epochs}" in why


def test_pinned_values_are_kept():
    cfg, why = resolve_budget(TrainConfig(batch_size=8, epochs=2), 420)
    assert (cfg.batch_size, cfg.epochs) == (8, 2)
    assert cfg.patience == max(5, -(-PATIENCE_STEPS // 53))  # patience still auto, for batch 8
    assert "batch_size, epochs pinned in params" in why
