"""The README is a contract: its Quick start is what CI runs, and every `python run.py ...` command
it shows composes as written (the options exist, every key is in the config, the overrides parse).

The commands are composed in-process, exactly as ``run.py`` composes them, not run: most run minutes
on data the user brings (``dataset.path=/data/...``). What the real runs do is tested elsewhere, and
the Quick start itself is run verbatim by CI (.ci/run) and by a person from a fresh clone.
"""
from __future__ import annotations

import re
import shlex

import pytest

from hode.config import ROOT, compose_config

FLAGS = {"-m", "--multirun", "--cfg", "job", "hydra", "all", "--help", "--info", "--resolve"}


def quickstart_lines(readme: str) -> list[str]:
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [l for l in block.splitlines() if l.strip()]


def run_commands(text: str) -> list[str]:
    """Every ``python run.py ...`` line of the bash blocks (continuations joined, comments cut) and
    of inline code spans."""
    out = [c.strip() for c in re.findall(r"`(python run\.py[^`]*)`", text)]
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("python run.py"):
                    out.append(part)
    return out


def overrides_of(command: str) -> list[str]:
    """The overrides a command gives run.py; a sweep (``-m a=x,y``) composes with its first values."""
    words = shlex.split(command)[2:]
    sweep = "-m" in words or "--multirun" in words
    out = []
    for w in words:
        if w in FLAGS or w.startswith("hydra."):
            continue
        if sweep and "=" in w and not w.split("=", 1)[1].startswith("["):
            key, value = w.split("=", 1)
            w = f"{key}={value.split(',')[0]}"
        out.append(w)
    return out


README = (ROOT / "README.md").read_text()
COMMANDS = sorted(set(run_commands(README)))


def test_quickstart_has_exactly_two_commands_and_ci_runs_the_second(repo_root):
    lines = quickstart_lines((repo_root / "README.md").read_text())
    assert len(lines) == 2
    ci = (repo_root / ".ci" / "run").read_text()
    assert lines[1] in ci.splitlines()


def test_the_readme_shows_run_commands():
    assert len(COMMANDS) >= 30 and "python run.py" in COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_every_readme_run_command_composes(command):
    compose_config(overrides_of(command))  # raises ConfigError with the one-line reason
