"""Serving fixtures: raw test rows, request helpers (the trained model folder is in tests/conftest.py).

Test modules use these through fixtures only (they should not import conftest by name).
"""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest


def _rows(dataset: Path, n: int) -> pd.DataFrame:
    """n test-split rows as raw inputs: text, absolute image/audio paths ("" = missing)."""
    df = pd.read_csv(dataset / "manifest.csv", dtype=str, keep_default_na=False)
    full = df[(df["image"] != "") & (df["audio"] != "") & (df["text"] != "")]
    rows = full.head(n).reset_index(drop=True)
    for col in ("image", "audio"):
        rows[col] = [str(dataset / p) for p in rows[col]]
    return rows


def _b64(path: str) -> str | None:
    return base64.b64encode(Path(path).read_bytes()).decode() if path else None


def _instances(rows: pd.DataFrame) -> list[dict]:
    """JSON instances for rows (absent keys for missing modalities)."""
    out = []
    for _, r in rows.iterrows():
        inst = {}
        if r["text"]:
            inst["text"] = r["text"]
        for col in ("image", "audio"):
            if r[col]:
                inst[col] = _b64(r[col])
        out.append(inst)
    return out


def _with_gaps(rows: pd.DataFrame) -> pd.DataFrame:
    """The same rows with a different modality missing in some of them."""
    rows = rows.copy()
    rows.loc[1, "audio"] = ""
    rows.loc[2, "image"] = ""
    rows.loc[3, "text"] = ""
    rows.loc[4, ["image", "audio"]] = ""
    return rows


@pytest.fixture(scope="session")
def serve_io():
    """Helpers for building requests from dataset rows."""
    return SimpleNamespace(rows=_rows, b64=_b64, instances=_instances, with_gaps=_with_gaps)
