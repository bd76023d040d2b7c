"""A name -> builder table, used for models and losses (the torchvision/timm pattern)."""

from __future__ import annotations

from typing import Any, Callable


class Registry:
    """Maps names to keyword-only builder functions.

    ``register(name)`` is a decorator; ``build(name, **kwargs)`` calls the builder;
    ``names()`` lists what is registered. ``loader`` (optional) is called before any lookup to
    import the modules that register built-ins.
    """

    def __init__(self, kind: str, loader: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._table: dict[str, Callable[..., Any]] = {}
        self._loader = loader

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(builder: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._table and self._table[name] is not builder:
                raise ValueError(f"{self.kind} name {name!r} is already registered")
            self._table[name] = builder
            return builder

        return wrap

    def _load(self) -> None:
        if self._loader is not None:
            self._loader()

    def names(self) -> list[str]:
        self._load()
        return sorted(self._table)

    def get(self, name: str) -> Callable[..., Any]:
        self._load()
        if name not in self._table:
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self._table)) or 'none'}")
        return self._table[name]

    def build(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)
