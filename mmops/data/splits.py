"""Seeded, stratified train/val/test assignment for manifests without a `split` column."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split


def assign_splits(df: pd.DataFrame, seed: int, val: float = 0.15, test: float = 0.15) -> pd.DataFrame:
    """Return a copy of `df` whose `split` column is filled, stratified by label."""
    out = df.copy()
    if "split" in out.columns and (out["split"] != "").all():
        return out
    ids = out["sample_id"].to_numpy()
    labels = out["label"].to_numpy()
    rest, test_ids = train_test_split(ids, test_size=test, random_state=seed, stratify=labels)
    rest_labels = out.set_index("sample_id").loc[rest, "label"].to_numpy()
    train_ids, val_ids = train_test_split(rest, test_size=val / (1 - test), random_state=seed, stratify=rest_labels)
    split = {**{i: "train" for i in train_ids}, **{i: "val" for i in val_ids}, **{i: "test" for i in test_ids}}
    out["split"] = out["sample_id"].map(split)
    return out
