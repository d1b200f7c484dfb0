"""Config helpers: the ``${root:}`` resolver, composing the run config, instantiation with readable errors,
option lookup."""
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


def check_options(overrides: list[str]) -> None:
    """Refuse ``group=option`` overrides naming an option that does not exist, in one line
    (Hydra's own error lists its search path over many)."""
    for arg in overrides:
        if "=" not in arg or arg.startswith(("hydra", "-")):
            continue
        key, value = arg.split("=", 1)
        group = key.lstrip("+~")
        if "." in group or "/" in group or not (CONF_DIR / group).is_dir():
            continue
        for choice in value.split(","):  # multirun: a,b,c
            if choice and choice not in options(group):
                raise ConfigError(f"unknown {group} option '{choice}' (available: {', '.join(options(group))})")


def compose_config(overrides: list[str]) -> DictConfig:
    """``conf/config.yaml`` composed as ``python run.py <overrides>`` would, outside a running app
    (benchmarks, tests): Hydra's own config is registered so ``${hydra:...}`` interpolations resolve,
    then dropped from the result. An unknown option or a malformed override is a :class:`ConfigError`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf import open_dict

    check_options(list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        except HydraException as e:
            raise ConfigError(f"cannot compose the config: {str(e).strip().splitlines()[0]}") from None
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def options(group: str) -> list[str]:
    """The option names of a config group (``conf/<group>/*.yaml``)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def load_option(group: str, name: str, models: str = "synthetic") -> DictConfig:
    """One option file of a group, e.g. ``load_option("detector", "yolov5s")``. A topology's model
    tiers (``${models.large}``) resolve against the ``models`` option (conf/models/)."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown {group} option '{name}' (available: {', '.join(options(group))})")
    cfg = OmegaConf.load(path)
    cfg.pop("defaults", None)
    if group != "models" and "${models." in path.read_text():
        root = OmegaConf.create({"models": load_option("models", models), group: cfg})
        cfg = root[group]  # still attached to root, so the tiers resolve on access
    return cfg
