#!/usr/bin/env python3
"""Guard against the fresh-machine break: the declared ranges, the tested lock and today's releases.

1. Every dependency pyproject.toml declares (with the dev extra) is pinned in requirements.lock, at a
   version inside its declared range: the lock is what the ranges promise.
2. ``--resolve``: pip resolves the project afresh *without* the lock and the script lists every
   package for which today's newest allowed release differs from the tested one. The Quick start
   installs with the lock, so such drift cannot break it; it says when to refresh the lock
   (``python .ci/lock.py``, then the whole suite). ``--strict`` makes drift in a declared
   dependency an error.
Exit 1 on a broken promise, 0 otherwise; one line per finding.
"""
from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lock import LOCK, ROOT, norm, resolve  # noqa: E402


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[norm(name)] = version
    return pins


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolve", action="store_true", help="also resolve afresh and report drift from the lock")
    ap.add_argument("--strict", action="store_true", help="with --resolve: drift in a declared dependency fails")
    args = ap.parse_args()
    if not LOCK.is_file():
        print(f"error: {LOCK} is missing: write it with python .ci/lock.py", file=sys.stderr)
        return 1
    pins, problems = locked(), []
    for req in declared():
        have = pins.get(norm(req.name))
        if have is None:
            problems.append(f"{req.name} is declared ({req.specifier}) but not pinned in requirements.lock")
        elif not req.specifier.contains(have, prereleases=True):
            problems.append(f"{req.name}=={have} in requirements.lock is outside its declared range {req.specifier}")
    direct = {norm(r.name) for r in declared()}
    drift = []
    if args.resolve:
        fresh = resolve()
        for name, version in sorted(fresh.items()):
            if pins.get(name) != version:
                drift.append((name, pins.get(name), version))
        for name, was, now in drift:
            print(f"drift: {name} {was or '(not locked)'} -> {now} resolves today{' (declared)' if name in direct else ''}")
        if args.strict:
            problems += [f"{n} resolves to {now}, tested {was}: refresh the lock and run the suite"
                         for n, was, now in drift if n in direct]
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    print(f"check-deps: {len(direct)} declared, {len(pins)} locked, {len(drift)} drifted, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
