"""The README's Quick start is the contract CI runs: keep it and .ci/run in sync."""
import re


def quickstart_lines(readme: str) -> list[str]:
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [l for l in block.splitlines() if l.strip()]


def test_quickstart_has_exactly_two_commands_and_ci_runs_the_second(repo_root):
    lines = quickstart_lines((repo_root / "README.md").read_text())
    assert len(lines) == 2
    ci = (repo_root / ".ci" / "run").read_text()
    assert lines[1] in ci.splitlines()
