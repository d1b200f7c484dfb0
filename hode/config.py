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


# Config groups that are not in the defaults list: what they are instead of a ``group=option``.
NOT_SELECTABLE = {
    "device": "conf/device/ holds the device profiles that topology nodes name (a node's 'device:', e.g. "
              "topology=paper5, or topology.nodes=[{name: a, model: yolov5n, device: gtx1050}]), not a run option",
    "device_sets": "conf/device_sets/ holds alternative device profiles (experiments/calibrate_4k.py), "
                   "not a run option",
}
# Hydra flags after which run.py checks option names only (the overrides may be sweeps, or the
# config another one).
FLAGS_WITHOUT_COMPOSE = ("-m", "--multirun", "--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i",
                         "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--package", "-p",
                         "--resolve", "--run", "-r", "--shell-completion", "-sc", "--version", "--experimental-rerun")


def defaults_groups() -> list[str]:
    """The groups of ``conf/config.yaml``'s defaults list (the ones ``group=option`` replaces)."""
    defaults = OmegaConf.load(CONF_DIR / "config.yaml").get("defaults", [])
    return [str(next(iter(d))) for d in defaults if isinstance(d, (dict, DictConfig))]


def top_level_keys() -> list[str]:
    """The plain keys of ``conf/config.yaml`` (``seed=1``, ``progress=false``, ...)."""
    return sorted(str(k) for k in OmegaConf.load(CONF_DIR / "config.yaml") if k not in ("defaults", "hydra"))


def check_options(overrides: list[str]) -> None:
    """Refuse, in one line, ``group=option`` overrides naming an option or a group that does not
    exist, or a group that is not selectable (Hydra's own errors span many lines)."""
    import difflib

    for arg in overrides:
        if "=" not in arg or arg.startswith(("hydra", "-")):
            continue
        key, value = arg.split("=", 1)
        group = key.lstrip("+~")
        if "." in group or "/" in group:
            continue
        if group in NOT_SELECTABLE:
            raise ConfigError(f"{group}={value}: {NOT_SELECTABLE[group]}")
        if not (CONF_DIR / group).is_dir():
            if key.startswith(("+", "~")) or group in top_level_keys():
                continue  # +new_key=... adds a key; seed=..., progress=... are plain keys
            close = difflib.get_close_matches(group, defaults_groups() + top_level_keys(), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(f"unknown config group or key '{group}' ({hint}groups: {', '.join(defaults_groups())}; "
                              f"keys: {', '.join(top_level_keys())})")
        if group not in defaults_groups() and not key.startswith("+"):
            raise ConfigError(f"{group} is added, not replaced: write +{group}={value}")
        for choice in value.split(","):  # multirun: a,b,c
            if choice and choice not in options(group):
                raise ConfigError(f"unknown {group} option '{choice}' (available: {', '.join(options(group))})")


def _parse_each(overrides: list[str]) -> None:
    """One line naming the malformed override (Hydra's parser error does not say which one)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for o in overrides:
        try:
            parsed = parser.parse_overrides([o])[0]
        except HydraException as e:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            why = next((ln for ln in lines if not ln.startswith(("See ", "Error parsing"))), "cannot parse it")
            raise ConfigError(f"malformed override '{o}': {why} (quote a value holding brackets, commas or "
                              "spaces, e.g. 'key=[1,2]')") from None
        if parsed.is_sweep_override():
            raise ConfigError(f"'{o}' is a sweep (several values): add -m to run one job per value")


def _compose(overrides: list[str]) -> DictConfig:
    """The composed config including ``hydra``; any composition error is one :class:`ConfigError` line."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException

    check_options(overrides)
    _parse_each(overrides)
    error = None
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
        except HydraException as e:
            error = e
    if error is not None:  # explained outside the context: the explanation composes again
        raise _composition_error(error, overrides) from None
    HydraConfig.instance().set_config(cfg)
    return cfg


def _composition_error(e: Exception, overrides: list[str]) -> ConfigError:
    """Hydra's "Could not override 'a.b'" for a key the node lacks becomes "unknown config key",
    naming the keys the node has."""
    import difflib
    import re

    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    m = re.match(r"Could not override '([^']+)'", first)
    if not (m and "." in m.group(1) and "not in struct" in f"{text} {e.__cause__}"):
        return ConfigError(f"cannot compose the config: {first}")
    key = m.group(1)
    try:
        base = _compose([o for o in overrides if o.split("=", 1)[0] != key])
    except HodeError:
        return ConfigError(f"unknown config key '{key}'")
    parts = key.split(".")
    absent = object()  # a key that is there may hold null
    depth = next(i for i in range(1, len(parts) + 1)
                 if OmegaConf.select(base, ".".join(parts[:i]), default=absent) is absent)
    parent, leaf = ".".join(parts[:depth - 1]), parts[depth - 1]
    node = OmegaConf.select(base, parent) if parent else base
    keys = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
    if not isinstance(node, DictConfig):
        return ConfigError(f"unknown config key '{key}': {parent} is a value, not a group of keys")
    close = difflib.get_close_matches(leaf, keys, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return ConfigError(f"unknown config key '{key}': {parent or 'the config'} has no '{leaf}' "
                       f"({hint}it has: {', '.join(keys)})")


def compose_config(overrides: list[str]) -> DictConfig:
    """``conf/config.yaml`` composed as ``python run.py <overrides>`` would, outside a running app
    (benchmarks, tests): Hydra's own config is registered so ``${hydra:...}`` interpolations resolve,
    then dropped from the result. An unknown option or key, a malformed override or a value
    :func:`check_values` refuses is a :class:`ConfigError`."""
    from omegaconf import open_dict

    cfg = _compose(list(overrides))
    with open_dict(cfg):
        del cfg["hydra"]
    check_values(cfg)
    return cfg


def check_values(cfg: DictConfig) -> None:
    """Values Hydra accepts but a run would crash on deep inside (numpy seeding, a 100000 px
    detector input, a CUDA device that is not there), refused up front in one line."""
    from hode.data import limits

    seed = cfg.get("seed")
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**32):
        raise ConfigError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    limits.configure(cfg.get("limits"))
    data = cfg.get("dataset")
    w, h = (data.get("width"), data.get("height")) if isinstance(data, DictConfig) else (None, None)
    if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h)):  # before any import of torch
        limits.check_pixels((w, h), "dataset.width x dataset.height", ConfigError)
    det = cfg.get("detector")
    if not isinstance(det, DictConfig):
        return
    imgsz = det.get("imgsz")
    if isinstance(imgsz, int) and not isinstance(imgsz, bool) and imgsz > 0:
        limits.check_pixels((imgsz, imgsz), f"detector.imgsz={imgsz}: the detector's input", ConfigError)
    check_torch_device(str(det.get("device", "auto")), "detector.device")
    from hode.detect.yolo import check_canvas  # before golden labels or workers, not at the detector's first use

    check_canvas(det.get("canvas"))


def check_torch_device(device: str, where: str) -> None:
    """``cuda``, ``cuda:N`` or ``N`` must name a CUDA device this machine has."""
    import re

    m = re.fullmatch(r"(?:cuda:?|)(\d*)", device.strip())
    if not m or device.strip() in ("", "cpu", "auto", "mps"):
        return
    import torch

    index = int(m.group(1) or 0)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= count:
        have = f"{count} CUDA device(s), cuda:0 to cuda:{count - 1}" if count else "no CUDA device"
        raise ConfigError(f"{where}={device}: this machine has {have}; use {where}=auto or cpu")


def check_run_dir(path: str | Path) -> None:
    """The run dir must be a folder that can be made and written (Hydra would raise a traceback).
    Probed with a temporary folder in its nearest existing ancestor, so nothing is left behind."""
    import tempfile

    p = Path(path).expanduser().absolute()
    base = next(a for a in (p, *p.parents) if a.exists())
    if not base.is_dir():
        raise ConfigError(f"hydra.run.dir={path}: {base} is a file, not a folder")
    try:
        Path(tempfile.mkdtemp(dir=base, prefix=".hode-write-test-")).rmdir()
    except OSError as e:
        raise ConfigError(f"hydra.run.dir={path}: cannot write in {base} ({e.strerror or type(e).__name__})") from None


def check_cli(argv: list[str]) -> None:
    """Everything ``python run.py <argv>`` can refuse before Hydra starts, in one line: unknown or
    unselectable groups and options, malformed overrides, unknown keys, bad values, an unusable run
    dir. After Hydra flags (``-m``, ``--cfg``, ...) only group and option names are checked."""
    overrides = [a for a in argv if not a.startswith("-")]
    flags = [a.split("=", 1)[0] for a in argv if a.startswith("-")]
    if flags:
        if all(f in FLAGS_WITHOUT_COMPOSE for f in flags):
            check_options([a for a in overrides if "=" in a])
        return  # Hydra parses the flags (and reports an unknown one)
    cfg = _compose(overrides)
    check_values(cfg)
    check_run_dir(cfg.hydra.run.dir)


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
