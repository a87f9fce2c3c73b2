"""One generic name → object registry (units, families, datasets, samplers, ...)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from icbench.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named mapping filled by a decorator.

    Registering a name twice raises `ValueError`; looking up an unknown name raises `UnknownNameError`,
    whose message names the registry and lists the known keys.

    Example:
        UNITS: Registry[type[nn.Conv2d]] = Registry("unit")

        @UNITS.register("ic")
        class ICConv2d(nn.Conv2d): ...
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._items: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name or obj.__name__, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.name} {name!r} is already registered (as {self._items[name]!r})")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.name, name, self._items) from None

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {sorted(self._items)})"
