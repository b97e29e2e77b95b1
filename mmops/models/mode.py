"""Train/eval switches that skip the walk when a module is already in the mode asked for.

`nn.Module.train(mode)` visits every submodule (and transformers' override does more per module):
about 2 ms for MiniLM and the small CNNs, several times per serving call. A module whose own flag
already matches is taken to match throughout, which holds as long as a subtree's mode is only ever
changed through these functions or through `train()`/`eval()` on an ancestor.
"""

from __future__ import annotations

from torch import nn


def set_training(module: nn.Module, mode: bool) -> nn.Module:
    """`module.train(mode)` unless `module.training` already is `mode`."""
    if module.training != mode:
        module.train(mode)
    return module


def ensure_eval(module: nn.Module) -> nn.Module:
    """`module.eval()` unless it is already in eval mode."""
    return set_training(module, False)
