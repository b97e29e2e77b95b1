"""A content-addressed store of tensors on disk: `<root>/<key[:2]>/<key>.pt`, `key` a content hash.

Entries are written atomically (`mmops.atomic`), so concurrent processes (DDP
ranks, parallel runs) can share one folder; an entry that does not load (truncated, corrupt)
counts as a miss: it is recomputed and rewritten, never trusted.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, TypeVar

import torch

from mmops.atomic import atomic_path

log = logging.getLogger(__name__)
T = TypeVar("T")  # a tensor, or a container of tensors


def cached_tensor(root: Path, key: str, compute: Callable[[], T]) -> T:
    """The value stored under `key`, else `compute()`, stored atomically and returned."""
    path = Path(root) / key[:2] / f"{key}.pt"
    if path.is_file():
        try:
            value = torch.load(path, map_location="cpu", weights_only=True)
            log.debug("tensor store: hit %s", path)
            return value
        except Exception as err:  # noqa: BLE001  any unreadable entry is recomputed
            log.warning("tensor store: unreadable entry %s (%s); recomputing", path, err)
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(value, tmp)
    log.debug("tensor store: stored %s", path)
    return value
