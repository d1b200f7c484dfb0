"""The README and the docs site are a contract: the README's Quick start is what CI runs, and every
`python run.py ...` command that README.md or a page under docs/ shows composes as written (the
options exist, every key is in the config, the overrides parse, no ``<placeholder>`` stands in for a
value).

The commands are composed in-process, exactly as ``run.py`` composes them, not run: most run minutes
on data the user brings (``dataset.path=/data/...``). What the real runs do is tested elsewhere, and
the Quick start itself is run verbatim by CI (.ci/run) and by a person from a fresh clone. The site
itself is built by CI (``mkdocs build --strict`` in .ci/run), which checks its links and anchors.
"""
from __future__ import annotations

import re
import shlex

import pytest

from hode.config import ROOT, build, compose_config

FLAGS = {"-m", "--multirun", "--cfg", "job", "hydra", "all", "--help", "--info", "--resolve"}
PLACEHOLDER = re.compile(r"<[^<>]*>")  # <dir>, <time>: fine in prose and comments, not in a command


def quickstart_lines(readme: str) -> list[str]:
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [l for l in block.splitlines() if l.strip()]


def run_commands(text: str) -> list[str]:
    """Every ``python run.py ...`` line of the fenced code blocks (continuations joined, comments
    cut) and of inline code spans."""
    out = [c.strip() for c in re.findall(r"`(python run\.py[^`]*)`", text)]
    for block in re.findall(r"```[\w-]*\n(.*?)```", text, re.S):
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


# README.md and every page of the docs site (docs/**/*.md), each command once.
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
COMMANDS = sorted({c for f in DOC_FILES for c in run_commands(f.read_text())})


def test_quickstart_has_exactly_two_commands_and_ci_runs_the_second(repo_root):
    lines = quickstart_lines((repo_root / "README.md").read_text())
    assert len(lines) == 2
    ci = (repo_root / ".ci" / "run").read_text()
    assert lines[1] in ci.splitlines()


def test_the_docs_site_shows_the_same_quickstart(repo_root):
    readme = quickstart_lines((repo_root / "README.md").read_text())
    assert quickstart_lines((repo_root / "docs" / "getting-started.md").read_text()) == readme


def test_the_docs_show_run_commands():
    assert len(DOC_FILES) > 10, "docs/ pages not found"
    assert len(COMMANDS) >= 30 and "python run.py" in COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_every_documented_run_command_composes(command):
    assert not PLACEHOLDER.search(command), f"placeholder in a documented command: {command}"
    compose_config(overrides_of(command))  # raises ConfigError with the one-line reason


def test_flow_filter_page_commands_build(repo_root):
    """Every command in the bash blocks of the Flow filter page composes, and its filter builds
    (where it names no placeholder path)."""
    page = (repo_root / "docs" / "flow-filter.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", page, re.S):
        commands += [shlex.split(c)[2:] for c in run_commands(f"```bash\n{block}```")]
    assert any("filter.guard.motion=64" in c for c in commands)
    for overrides in commands:
        cfg = compose_config(overrides)
        if not any("PATH" in o or "/path/" in o for o in overrides):
            assert build(cfg.filter) is not None, overrides
