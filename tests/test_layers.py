"""The layers call downwards only (docs: "The next shape"): a static check of the import lines."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported(path: Path) -> set[str]:
    """Every module a file imports, at top level or inside a function."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def offenders(files: list[Path], banned: tuple[str, ...]) -> list[str]:
    return sorted(f"{p.relative_to(ROOT)} imports {m}" for p in files for m in imported(p)
                  if any(m == b or m.startswith(b + ".") for b in banned))


def py(*parts: str) -> list[Path]:
    out: list[Path] = []
    for part in parts:
        p = ROOT / part
        out += [p] if p.is_file() else sorted(p.rglob("*.py"))
    return out


def test_edge_imports_nothing_from_cluster_or_above():
    assert offenders(py("hode/edge"), ("hode.cluster", "hode.schedule", "hode.pipeline", "hode.tasks")) == []


def test_profiles_sit_below_edge_and_cluster():
    assert offenders(py("hode/profiles.py"), ("hode.cluster", "hode.edge", "hode.schedule")) == []


def test_cluster_imports_nothing_from_schedule_or_above():
    assert offenders(py("hode/cluster"), ("hode.schedule", "hode.pipeline", "hode.replay", "hode.tasks")) == []


def test_library_and_reports_import_nothing_from_experiments():
    assert offenders(py("run.py", "hode", "reports"), ("experiments",)) == []


def test_schedule_filter_detect_data_import_nothing_from_the_loops_above():
    above = ("hode.pipeline", "hode.replay", "hode.tasks", "experiments", "reports")
    assert offenders(py("hode/schedule", "hode/filter", "hode/detect", "hode/data"), above) == []
