"""A Triton model repository for the harness's detectors: one folder per model with ``config.pbtxt``
(Python backend, dynamic batching, the tensors of :mod:`hode.cluster.triton.wire`), ``1/model.py``
(:mod:`hode.cluster.triton.model`) and ``1/weights.pt``. The bundled server
(:mod:`hode.cluster.triton.serve`), a stock Triton container and a Jetson's Triton load the same folder
(docs/triton.md)::

    python -m hode.cluster.triton.repo OUT_DIR --model yolov5n --model yolov5s [--set conf=0.25]
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Sequence

import yaml
from omegaconf import OmegaConf

from hode.cluster.triton.wire import INPUT, OUTPUT_DTYPES
from hode.errors import ConfigError, check


def detector_spec(model: str, overrides: dict | None = None) -> dict:
    """``conf/detector/<model>.yaml`` with ``overrides`` (the run's shared detector settings) laid over it,
    as the plain dict the served model builds its detector from (weights: a local file)."""
    from hode.detect.factory import SHARED_KEYS, detector_config

    base = OmegaConf.create({k: v for k, v in (overrides or {}).items() if k in SHARED_KEYS})
    unknown = sorted(set(overrides or {}) - set(SHARED_KEYS))
    check(not unknown, f"triton model {model}: unknown detector setting(s) {unknown} (known: {', '.join(SHARED_KEYS)})")
    return OmegaConf.to_container(detector_config(model, base), resolve=True)


def config_pbtxt(name: str, spec: dict, max_batch_size: int = 16, queue_delay_us: int = 2000,
                 instances: int = 1, torch_threads: int = 0, tile: tuple[int, int] | None = None) -> str:
    """``config.pbtxt`` of one model. ``tile``: a fixed (height, width) input instead of any size."""
    h, w = tile if tile else (-1, -1)
    outs = {"BOXES": "[ -1, 4 ]", "SCORES": "[ -1 ]", "COUNT": "[ 1 ]"}
    outputs = ",\n".join(f'  {{ name: "{n}" data_type: TYPE_{OUTPUT_DTYPES[n]} dims: {d} }}' for n, d in outs.items())
    return (f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch_size}\n'
            f'input [\n  {{ name: "{INPUT}" data_type: TYPE_UINT8 dims: [ {h}, {w}, 3 ] }}\n]\n'
            f"output [\n{outputs}\n]\n"
            f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}\n"
            f"instance_group [ {{ count: {instances} kind: KIND_CPU }} ]\n"
            f'parameters: {{ key: "hode_detector" value: {{ string_value: {json.dumps(json.dumps(spec))} }} }}\n'
            f'parameters: {{ key: "torch_threads" value: {{ string_value: "{torch_threads}" }} }}\n')


def write_model(root: Path, name: str, model: str, overrides: dict | None = None, detector: dict | None = None,
                **config: object) -> Path:
    """One model folder ``root/name`` serving detector option ``model``; returns it. ``detector``: its
    settings as a whole (weights included) instead of ``conf/detector/<model>.yaml``, for a host that
    has no conf/ (``python -m remote deploy`` sends them)."""
    spec = dict(detector) if detector is not None else detector_spec(model, overrides)
    weights = Path(spec["weights"])
    check(weights.is_file(), f"triton model {name}: weights file not found: {weights}")
    folder = root / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, folder / "1" / "weights.pt")
    spec["weights"] = "weights.pt"  # relative: the folder can move to another machine
    shutil.copyfile(Path(__file__).with_name("model.py"), folder / "1" / "model.py")
    (folder / "config.pbtxt").write_text(config_pbtxt(name, spec, **config))
    return folder


def parse_sets(sets: Sequence[str]) -> dict:
    """``key=value`` strings as a dict, values parsed as YAML scalars (``conf=0.01`` -> 0.01)."""
    out = {}
    for s in sets:
        check("=" in s, f"--set wants key=value, got {s!r}")
        k, v = s.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def parse_models(models: Sequence[str]) -> list[tuple[str, str, tuple[int, int] | None]]:
    """``--model`` values: ``option``, ``name=option`` or ``name=option@HxW`` (a fixed tile size)."""
    out = []
    for m in models:
        name, _, rest = m.rpartition("=")
        option, _, size = rest.partition("@")
        tile = None
        if size:
            try:
                h, w = (int(x) for x in size.lower().split("x"))
            except ValueError:
                raise ConfigError(f"--model {m}: the size after @ must be HxW, e.g. 608x704") from None
            tile = (h, w)
        out.append((name or option, option, tile))
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", required=True,
                   help="detector option to serve: yolov5n, name=yolov5n, or name=yolov5n@HxW (fixed input); repeatable")
    p.add_argument("--detector", type=Path, default=None,
                   help="JSON file with the detector settings (weights path included) of the one --model, "
                        "instead of conf/detector/<option>.yaml")
    p.add_argument("--set", action="append", default=[], help="shared detector setting, e.g. conf=0.25; repeatable")
    p.add_argument("--max-batch-size", type=int, default=16, help="largest batch the dynamic batcher forms")
    p.add_argument("--queue-delay-us", type=int, default=2000, help="how long the batcher waits to fill a batch")
    p.add_argument("--instances", type=int, default=1, help="model instances (each a stub process)")
    p.add_argument("--torch-threads", type=int, default=0, help="torch threads per instance; 0: torch's default")


def write_repository(root: Path, args: argparse.Namespace) -> list[str]:
    """The models named by ``args`` (:func:`add_arguments`) into ``root``; returns their names."""
    sets = parse_sets(args.set)
    models = parse_models(args.model)
    detector = None
    if getattr(args, "detector", None) is not None:
        check(len(models) == 1, "--detector gives the settings of one model: name exactly one --model with it")
        try:
            detector = json.loads(args.detector.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"--detector {args.detector}: not a readable JSON file ({e})") from None
        check(isinstance(detector, dict) and "weights" in detector,
              f"--detector {args.detector}: wants a JSON object with at least 'weights'")
        detector.update(sets)
    names = []
    for name, option, tile in models:
        write_model(root, name, option, sets, detector, max_batch_size=args.max_batch_size, queue_delay_us=args.queue_delay_us,
                    instances=args.instances, torch_threads=args.torch_threads, tile=tile)
        names.append(name)
    return names


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hode.cluster.triton.repo", description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="model repository folder to write (created)")
    add_arguments(p)
    args = p.parse_args(argv)
    names = write_repository(args.out, args)
    print(f"wrote {', '.join(names)} to {args.out}")
    return 0


if __name__ == "__main__":
    from hode.cluster.triton.serve import cli_errors

    raise SystemExit(cli_errors(main))
