"""The component registries: encoders and fusions, keyed by the names used in `params.yaml` (Ludwig-style).

This module imports no component: each component module registers itself with a decorator, and
`mmops.models` (the package `__init__`) imports the component modules so they are registered.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class ComponentConfig(BaseModel):
    """Base for the typed config of one registered component; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class ComponentRegistry(Generic[T]):
    """Maps a config name to a class and the pydantic config it takes."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, tuple[type[T], type[ComponentConfig]]] = {}

    def register(self, name: str, config: type[ComponentConfig]) -> Callable[[type[T]], type[T]]:
        def decorator(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = (cls, config)
            return cls

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def config_for(self, name: str) -> type[ComponentConfig]:
        return self._lookup(name)[1]

    def build(self, name: str, options: dict[str, Any], **kwargs: Any) -> T:
        cls, config = self._lookup(name)
        return cls(config.model_validate(options), **kwargs)  # type: ignore[call-arg]

    def _lookup(self, name: str) -> tuple[type[T], type[ComponentConfig]]:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}"
            ) from None


ENCODERS: ComponentRegistry = ComponentRegistry("encoder")
FUSIONS: ComponentRegistry = ComponentRegistry("fusion")
