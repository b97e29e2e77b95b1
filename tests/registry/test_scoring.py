"""The frozen test rows, their hash and their scoring when the manifest lacks a modality column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mmops.config import MODALITIES
from mmops.registry.lineage import frozen_test_hash
from mmops.registry import scoring
from mmops.registry.scoring import frozen_test_rows, score_model

ROWS = pd.DataFrame({
    "sample_id": ["a", "b", "c", "d"],
    "label": ["cat", "dog", "cat", "dog"],
    "text": ["a cat", "", "the cat", "a dog"],
    "image": ["img/a.png", "img/b.png", "", "img/d.png"],
    "audio": ["wav/a.wav", "", "wav/c.wav", "wav/d.wav"],
})


def _dataset(root: Path, rows: pd.DataFrame) -> tuple[Path, Path]:
    """A dataset folder with `rows` as its manifest (media as small files) and its splits.csv."""
    root.mkdir()
    for rel in [p for column in ("image", "audio") for p in ROWS[column] if p]:
        (root / rel).parent.mkdir(exist_ok=True)
        (root / rel).write_bytes(rel.encode())
    rows.to_csv(root / "manifest.csv", index=False)
    splits = root / "splits.csv"
    pd.DataFrame({"sample_id": ROWS["sample_id"], "split": ["train", "test", "test", "test"]}).to_csv(splits, index=False)
    return root, splits


class EchoModel:
    """A stand-in pyfunc: predicts `cat` when the row has text, and records what it was sent."""

    def __init__(self) -> None:
        self.inputs: list[pd.DataFrame] = []

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        self.inputs.append(frame)
        cat = (frame["text"] != "").astype(float)
        return pd.DataFrame({"label": ["cat" if c else "dog" for c in cat], "cat": cat, "dog": 1 - cat})


@pytest.mark.parametrize("missing", MODALITIES)
def test_manifest_without_a_modality_column(tmp_path, missing, monkeypatch):
    rows = frozen_test_rows(*_dataset(tmp_path / "without", ROWS.drop(columns=[missing])))
    assert list(rows["sample_id"]) == ["b", "c", "d"]
    assert set(MODALITIES) <= set(rows.columns) and (rows[missing] == "").all()
    media = [p for column in ("image", "audio") if column != missing for p in rows[column] if p]
    assert media and all(Path(p).is_absolute() and Path(p).is_file() for p in media)

    # an absent column hashes as a column of empty cells: the same test rows, the same hash
    empty = frozen_test_rows(*_dataset(tmp_path / "empty", ROWS.assign(**{missing: ""})))
    full = frozen_test_rows(*_dataset(tmp_path / "full", ROWS))
    assert frozen_test_hash(rows) == frozen_test_hash(empty) != frozen_test_hash(full)

    model = EchoModel()
    monkeypatch.setattr(scoring, "predict_frame", lambda loaded, frame: loaded.predict(frame))
    scores = score_model(model, rows, [f"without_{missing}.accuracy"])
    assert all(list(sent.columns) == list(MODALITIES) for sent in model.inputs) and len(model.inputs) == 2
    assert scores["accuracy"] == scores[f"without_{missing}"]["accuracy"] == pytest.approx(2 / 3)
