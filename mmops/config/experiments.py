"""Knobs of `mmops cv` (k-fold cross-validation), its gate rule, and `mmops tune` (Optuna search): schema only."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

Choice = str | int | float | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CVConfig(_Strict):
    """K models, each trained on K-1 stratified folds of the train split and scored on the held-out one."""

    folds: int = Field(5, ge=2, le=50, description="K (`mmops cv --folds` wins)")


class CVGateRule(_Strict):
    """A gate rule on the cross-validation report (`cv.json` in `paths.metrics`) of the same params and data."""

    metric: str = Field("macro_f1", description="a flattened metrics.json key, as cross-validated")
    min_mean: float | None = Field(None, description="floor on the mean over folds")
    max_std: float | None = Field(None, ge=0, description="ceiling on the standard deviation over folds (ddof=1)")

    @model_validator(mode="after")
    def _some_bound(self) -> "CVGateRule":
        if self.min_mean is None and self.max_std is None:
            raise ValueError("gate.cv needs min_mean, max_std or both")
        return self


class Dimension(_Strict):
    """One searched param: exactly one of `loguniform`, `uniform`, `int` ([low, high]) or `categorical` (choices)."""

    loguniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    int_: tuple[int, int] | None = Field(None, alias="int")
    categorical: list[Choice] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Dimension":
        given = [k for k in ("loguniform", "uniform", "int_", "categorical") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of loguniform, uniform, int, categorical")
        (kind,) = given
        value = getattr(self, kind)
        if kind == "categorical":
            if not value:
                raise ValueError("categorical needs at least one choice")
        elif not value[0] < value[1]:
            raise ValueError(f"{kind.rstrip('_')} range must be [low, high] with low < high, got {list(value)}")
        elif kind == "loguniform" and value[0] <= 0:
            raise ValueError(f"loguniform needs low > 0, got {value[0]}")
        return self

    @model_serializer(mode="wrap")
    def _only_its_kind(self, handler) -> dict:
        return {k: v for k, v in handler(self).items() if v is not None}

    @property
    def kind(self) -> str:
        return next(k.rstrip("_") for k in ("loguniform", "uniform", "int_", "categorical") if getattr(self, k) is not None)

    def contains(self, value: Any) -> bool:
        """Whether `value` (e.g. the current params value) is a point of this dimension."""
        if self.categorical is not None:
            return any(value == c and type(value) is type(c) for c in self.categorical)
        low, high = self.int_ or self.loguniform or self.uniform
        kinds = (int,) if self.int_ is not None else (int, float)
        return isinstance(value, kinds) and not isinstance(value, bool) and low <= value <= high


# searched when params give no `tune.space` (a given space replaces it whole: the params loader
# merges a mapping key by key into its default, which would keep these dimensions in any space)
DEFAULT_SPACE = {
    "train.lr": Dimension(loguniform=(3e-4, 1e-2)),
    "model.width": Dimension(categorical=[64, 128, 256]),
    "model.head.dropout": Dimension(uniform=(0.0, 0.5)),
    "train.batch_size": Dimension(categorical=["auto", 16, 64]),
}


class TuneConfig(_Strict):
    """Optuna study: seeded TPE sampler (seed: params `seed`), median pruner on per-epoch val macro-F1."""

    trials: int = Field(8, ge=1, description="trials, the defaults (trial 0) included (`mmops tune --trials` wins)")
    startup_trials: int = Field(3, ge=1, description="random trials (trial 0 included) before TPE models the results")
    prune_after_trials: int = Field(
        2, ge=1, description="trials that finish before any is pruned (>= 1: trial 0, the defaults, always finishes)"
    )
    prune_warmup_epochs: int = Field(3, ge=0, description="epochs of a trial before it can be pruned")
    space: dict[str, Dimension] = Field(
        {}, description="dotted params key -> its range; each key's current value must lie in it (trial 0 runs "
                        "the params as given); empty: DEFAULT_SPACE (lr, width, head dropout, batch size)",
    )

    def dimensions(self) -> dict[str, Dimension]:
        return self.space or DEFAULT_SPACE
