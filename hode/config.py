"""Config helpers: the ``${root:}`` resolver, instantiation with readable errors, option lookup."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hode.errors import ConfigError, HodeError

ROOT = Path(__file__).resolve().parent.parent  # the checkout: conf/, weights/ live here
CONF_DIR = ROOT / "conf"

if not OmegaConf.has_resolver("root"):
    OmegaConf.register_new_resolver("root", lambda: str(ROOT))


def build(node: DictConfig | dict, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that surfaces the user's mistake instead of Hydra's wrapper."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, HodeError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, HodeError):
            raise cause from None
        target = node.get("_target_", "?") if hasattr(node, "get") else "?"
        msg = str(cause or e).splitlines()[0] if str(cause or e) else type(cause or e).__name__
        raise ConfigError(f"cannot build {target}: {msg}") from None


def options(group: str) -> list[str]:
    """The option names of a config group (``conf/<group>/*.yaml``)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def load_option(group: str, name: str) -> DictConfig:
    """One option file of a group, e.g. ``load_option("detector", "yolov5s")``."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown {group} option '{name}' (available: {', '.join(options(group))})")
    cfg = OmegaConf.load(path)
    cfg.pop("defaults", None)
    return cfg
