"""Weights are code: a ``.pt`` file is a pickle, and unpickling one can run anything it names.

Ultralytics loads checkpoints with ``torch.load(weights_only=False)``, so a crafted file runs its
payload before any error is printed. :func:`check_weights` is called first, and *probes* the file
with torch's restricted unpickler (``torch.load(weights_only=True)``), which only builds tensors and
containers, plus the classes allowed here: the network layers of ``torch.nn.modules`` and
``ultralytics.nn`` (layers and model classes; not ``AutoBackend`` or the text models, which load
further files). During the probe each allowed class is a *stand-in* that records nothing and runs
no code of the real class; a checkpoint rebuilds layers without calling them (pickle's NEWOBJ and
BUILD), so a stand-in *called* like a function (REDUCE, the way a payload runs) is refused too. A
checkpoint that needs anything else (``os.system``, ``builtins.exec``, any function, a raw non-torch
pickle) is refused in one line naming it, and so is one the restricted loader cannot read, unless the
user trusts it explicitly: ``trust_weights=true`` in the config or ``HODE_TRUST_WEIGHTS=1`` in the
environment (a warning says so). Real ultralytics checkpoints (the project's ``weights/*.pt``,
official ``yolo11n.pt``/``yolov8n.pt``) only hold such classes and pass.

The project's own tagged checkpoints (flow filter, DQN) are read with ``weights_only=True`` and no
extra classes (:mod:`hode.checkpoints`), so they never need this.
"""
from __future__ import annotations

import functools
import importlib
import logging
import os
import pkgutil
import re
import warnings
from pathlib import Path

from hode.errors import WeightsError

log = logging.getLogger(__name__)

TRUST_ENV = "HODE_TRUST_WEIGHTS"
# Packages whose nn.Module subclasses a checkpoint may hold (layers and model classes only).
NETWORK_PACKAGES = ("torch.nn.modules", "ultralytics.nn.modules")
NETWORK_MODULES = ("ultralytics.nn.tasks",)
# Plain attribute holders found in older ultralytics checkpoints' training arguments.
EXTRA_CLASSES = ("ultralytics.utils.IterableSimpleNamespace", "types.SimpleNamespace")


def trusted_by_user() -> bool:
    """``HODE_TRUST_WEIGHTS=1`` (run.py sets it from ``trust_weights=true``)."""
    return os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


def _submodules(package: str) -> list:
    pkg = importlib.import_module(package)
    mods = [pkg]
    for info in pkgutil.iter_modules(pkg.__path__):
        try:
            mods.append(importlib.import_module(f"{package}.{info.name}"))
        except Exception:  # an optional submodule whose dependency is absent holds no class a checkpoint needs
            continue
    return mods


@functools.lru_cache(maxsize=1)
def allowed_classes() -> tuple[type, ...]:
    """The classes a network checkpoint may instantiate: nn.Module subclasses defined in
    :data:`NETWORK_PACKAGES` / :data:`NETWORK_MODULES`, plus :data:`EXTRA_CLASSES`."""
    import torch

    mods = [m for p in NETWORK_PACKAGES for m in _submodules(p)]
    mods += [importlib.import_module(m) for m in NETWORK_MODULES]
    out: dict[str, type] = {}
    for m in mods:
        for obj in vars(m).values():
            if isinstance(obj, type) and issubclass(obj, torch.nn.Module) and obj.__module__ == m.__name__:
                out[f"{obj.__module__}.{obj.__qualname__}"] = obj
    for dotted in EXTRA_CLASSES:
        mod, name = dotted.rsplit(".", 1)
        try:
            out[dotted] = getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    return tuple(out.values())


def _stand_in(name: str) -> type:
    """A class registered under ``name`` for the probe: building it is free, calling it is refused."""
    import pickle

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        raise pickle.UnpicklingError(f"the file calls {name}(...) while loading (a network class is rebuilt, "
                                     "never called, by a real checkpoint)")

    return type(name.rsplit(".", 1)[-1], (), {"__new__": __new__, "__init__": __init__,
                                                "__setstate__": lambda self, state: None})


@functools.lru_cache(maxsize=1)
def _stand_ins() -> list[tuple[type, str]]:
    return [(_stand_in(n), n) for n in (f"{c.__module__}.{c.__qualname__}" for c in allowed_classes())]


def may_unpickle(path: Path) -> bool:
    """True for a file torch or ultralytics would unpickle: ultralytics picks the PyTorch loader
    when ``.pt`` appears anywhere in the name; a zip or pickle body is unpickled whatever its name."""
    if ".pt" in path.name.lower() or path.suffix.lower() in (".pkl", ".pickle", ".ckpt", ".bin"):
        return True
    with path.open("rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _what_it_needs(e: Exception) -> str | None:
    """The global or the call that made the restricted loader stop, when that is what stopped it."""
    text = " ".join(str(e).split())
    if "while loading" in text:
        return re.search(r"the file calls \S+", text).group(0)
    m = re.search(r"GLOBAL ([\w.]+)", text)
    return f"it imports {m.group(1)}, which is not a network layer" if m else None


def check_weights(path: str | Path, what: str = "detector.weights", kind: str = "YOLO checkpoint") -> None:
    """Refuse, in one :class:`WeightsError` line, a weights file whose unpickling could run code.
    Call it before handing ``path`` to ultralytics or ``torch.load(weights_only=False)``."""
    import pickle

    import torch

    p = Path(path)
    if not p.is_file() or not may_unpickle(p):
        return  # a missing file is the loader's error; ONNX, yaml, ... are not pickles
    if trusted_by_user():
        log.warning("%s: %s is loaded without the safety scan (%s=1 / trust_weights=true): a pickle can run code",
                    what, p, TRUST_ENV)
        return
    if p.stat().st_size == 0:
        return  # empty: the loader says "not a checkpoint"
    opt_in = f"if you trust the file, set trust_weights=true (or {TRUST_ENV}=1)"
    if not hasattr(torch.serialization, "safe_globals"):  # torch < 2.5
        raise WeightsError(f"{what}: {p} cannot be checked for pickled code with torch {torch.__version__} "
                           f"(needs >= 2.5); {opt_in}")
    try:
        with torch.serialization.safe_globals(_stand_ins()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        needs = _what_it_needs(e)
        if needs:
            raise WeightsError(f"{what}: {p} is refused: loading it could run code ({needs}); {opt_in}") from None
        why = "a raw pickle or another format" if "Unsupported operand" in str(e) else type(e).__name__
        raise WeightsError(f"{what}: {p} is not a {kind} (torch's safe loader cannot read it: {why}); "
                           f"{opt_in}") from None
    except Exception as e:  # fail closed: what the restricted loader cannot read is not handed to the full one
        msg = (str(e).strip().splitlines() or [""])[0][:120]
        raise WeightsError(f"{what}: {p} is not a {kind} (torch cannot read it: {type(e).__name__}: {msg})") from None
