"""A name -> builder table, used for models and losses (the torchvision/timm pattern)."""

from __future__ import annotations

from typing import Any, Callable


class Registry:
    """Maps names to keyword-only builder functions.

    ``register(name, **info)`` is a decorator; ``build(name, **kwargs)`` calls the builder;
    ``names()`` lists what is registered; ``info(name)`` returns the declarations given at
    registration (a model's ``inputs``, a loss's ``targets``). ``loader`` (optional) is called
    before any lookup to import the modules that register built-ins.
    """

    def __init__(self, kind: str, loader: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._table: dict[str, Callable[..., Any]] = {}
        self._info: dict[str, dict[str, Any]] = {}
        self._loader = loader

    def register(self, name: str, **info: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(builder: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._table and self._table[name] is not builder:
                raise ValueError(f"{self.kind} name {name!r} is already registered")
            self._table[name] = builder
            self._info[name] = dict(info)
            return builder

        return wrap

    def info(self, name: str) -> dict[str, Any]:
        """The declarations ``name`` was registered with (a copy)."""
        self.get(name)
        return dict(self._info[name])

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
