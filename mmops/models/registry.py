"""Registries of encoders and fusions, keyed by the names used in `params.yaml`."""

from __future__ import annotations

from torch import nn

from mmops.registry_base import Registry

ENCODERS: Registry[nn.Module] = Registry("encoder")
FUSIONS: Registry[nn.Module] = Registry("fusion")


def _populate() -> None:
    # Importing the modules runs their @register decorators.
    from mmops.models import encoders, fusion, vision  # noqa: F401


_populate()
