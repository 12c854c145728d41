"""The learner registry. A learner module registers its class with :func:`register`;
everything else finds learners here by name, never by importing them directly."""
from __future__ import annotations

import importlib
import pkgutil

from ..errors import MetaRepError
from .base import CAPABILITIES, FAMILIES, TASKS, MetaLearner

_REGISTRY: dict[str, type[MetaLearner]] = {}

# Every module in this package except ``base`` defines learners; importing it
# registers them, so adding a learner is adding a file.
_SKIP = {"base"}


def register(cls: type[MetaLearner]) -> type[MetaLearner]:
    """Add a learner class to the registry (use as a class decorator).

    Checks what the rest of the program relies on, so that a typo fails at import
    instead of making the learner vanish from a page: a new ``name``, a ``family``
    in ``FAMILIES``, ``capabilities`` in ``CAPABILITIES``, ``tasks`` in ``TASKS``.
    """
    where = f"learner class {cls.__name__}"
    if not isinstance(cls, type) or not issubclass(cls, MetaLearner):
        raise MetaRepError(f"{where} must subclass MetaLearner")
    if not cls.name or not isinstance(cls.name, str):
        raise MetaRepError(f"{where} needs a non-empty string 'name'")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise MetaRepError(f"{where}: the name {cls.name!r} is already registered by "
                           f"{_REGISTRY[cls.name].__module__}.{_REGISTRY[cls.name].__name__}")
    if cls.family not in FAMILIES:
        raise MetaRepError(f"{where}: family {cls.family!r} is not one of {', '.join(FAMILIES)}")
    unknown = sorted(set(cls.capabilities) - CAPABILITIES)
    if unknown:
        raise MetaRepError(f"{where}: unknown capability {unknown[0]!r}; allowed: "
                           f"{', '.join(sorted(CAPABILITIES))}")
    bad_tasks = sorted(set(cls.tasks) - set(TASKS))
    if not cls.tasks or bad_tasks:
        raise MetaRepError(f"{where}: tasks must be a non-empty subset of {', '.join(TASKS)}, "
                           f"got {sorted(cls.tasks)}")
    names = [h.name for h in cls.all_hyperparams()]
    for h in cls.all_hyperparams():
        bad = sorted(set(h.per_task) - set(TASKS))
        if bad:
            raise MetaRepError(f"{where}: hyper-parameter {h.name!r} has a default for unknown task {bad[0]!r}")
    if len(set(names)) != len(names):
        raise MetaRepError(f"{where}: a hyper-parameter is declared twice in {names}")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a learner from the registry (tests that register a toy learner)."""
    _REGISTRY.pop(name, None)


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
