#!/usr/bin/env python3
"""Write requirements.lock: every package a clean ``pip install -e '.[dev]'`` resolves to today.

The Quick start installs with ``-c requirements.lock``, so a new upstream release never reaches a
user or CI untested. To move to newer releases: run this, run the whole suite, commit both.
    python .ci/lock.py            # rewrite requirements.lock from a fresh resolve
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
HEADER = ("# The tested set: `python .ci/lock.py` writes it from a fresh resolve of `pip install -e '.[dev]'`\n"
          "# (Python {py}, {platform}); the Quick start installs with `-c requirements.lock`.\n")


def resolve(constraints: Path | None = None) -> dict[str, str]:
    """{normalized name: version} that pip would install into an empty environment."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--disable-pip-version-check", "--report", str(report), "-e", f"{ROOT}[dev]"]
        if constraints is not None:
            cmd += ["-c", str(constraints)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"error: pip could not resolve the project: {done.stderr.strip().splitlines()[-1:]}")
        items = json.loads(report.read_text())["install"]
    return {norm(i["metadata"]["name"]): i["metadata"]["version"] for i in items if norm(i["metadata"]["name"]) != "hode"}


def norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def main() -> None:
    pins = resolve()
    import platform

    text = HEADER.format(py=platform.python_version(), platform=f"{platform.system()} {platform.machine()}")
    LOCK.write_text(text + "".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
    print(f"wrote {LOCK} ({len(pins)} packages)")


if __name__ == "__main__":
    main()
