"""The learner registry. A learner module registers its class with :func:`register`;
everything else finds learners here by name, never by importing them directly."""
from __future__ import annotations

import importlib
import pkgutil

from ..errors import MetaRepError
from .base import FAMILIES, MetaLearner

_REGISTRY: dict[str, type[MetaLearner]] = {}

# Every module in this package except ``base`` defines learners; importing it
# registers them, so adding a learner is adding a file.
_SKIP = {"base"}


def register(cls: type[MetaLearner]) -> type[MetaLearner]:
    _REGISTRY[cls.name] = cls
    return cls


_loaded = False


def _load_all() -> None:
    # Pages look learners up on every rerun: scan the package once per process.
    global _loaded
    if _loaded:
        return
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _SKIP and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    _loaded = True


def available() -> list[str]:
    """Registered learner names, by family (optimization, metric, memory, generation),
    then by each class's ``order``."""
    _load_all()
    rank = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(_REGISTRY, key=lambda n: (rank.get(_REGISTRY[n].family, 99),
                                            getattr(_REGISTRY[n], "order", 50), n))


def get_learner_class(name: str) -> type[MetaLearner]:
    _load_all()
    if name not in _REGISTRY:
        raise MetaRepError(f"unknown algorithm {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def build_learner(name: str, input_shape, n_way: int, task: str = "classification", **hp) -> MetaLearner:
    return get_learner_class(name)(input_shape, n_way, task=task, **hp)
