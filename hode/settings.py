"""Settings as one documented dataclass per component (CleanRL's ``Args`` is the model).

A component (the DQN scheduler, the scheduling env, the simulator) declares its settings once, as a
dataclass whose fields mirror its YAML block key for key. Hydra passes that block's keys as keyword
arguments; :func:`settings_of` turns them into the dataclass, so ``scheduler.lr=...`` on the command
line and ``DQNScheduler(lr=...)`` in code set the same field, and the constructor stays short.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from hode.errors import ConfigError

T = TypeVar("T")


def settings_of(cls: type[T], settings: T | Mapping | None, fields: Mapping[str, Any], where: str) -> T:
    """``cls`` from ``settings`` (an instance, or a mapping of its fields) updated by ``fields`` (keyword
    arguments, e.g. a YAML block's keys); an unknown key is refused in one line naming ``where``."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = dict(settings) if isinstance(settings, Mapping) else {}
    unknown = sorted(k for k in (*given, *fields) if k not in names)
    if unknown:
        raise ConfigError(f"{where}: unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(names))})")
    base = settings if isinstance(settings, cls) else cls(**given)
    return dataclasses.replace(base, **fields) if fields else base
