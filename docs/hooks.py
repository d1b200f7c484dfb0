"""mkdocs hooks (mkdocs.yml `hooks:`): two things the site needs that plain mkdocs cannot express.

1. The "Measurement history" nav entry lists every page under docs/history/ (index first), so a new
   history page appears in the site without editing mkdocs.yml.
2. The figure pictures live in reports/figures/ (where `python -m reports` draws them), outside docs/.
   Pages link them as ../reports/figures/... (which also works on GitHub); the site serves them as
   reports/figures/... inside the site, so --strict link checking finds them.
"""
from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
FIGURES = "reports/figures"
HISTORY = "Measurement history"


def _title(page: Path) -> str:
    for line in page.read_text().splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return page.stem.replace("-", " ").capitalize()


def on_config(config):
    docs = Path(config["docs_dir"])
    pages = sorted((docs / "history").glob("*.md"), key=lambda p: (p.name != "index.md", p.name))
    entries = [{("Overview" if p.name == "index.md" else _title(p)): p.relative_to(docs).as_posix()}
               for p in pages]
    for i, item in enumerate(config["nav"] or []):
        if isinstance(item, dict) and HISTORY in item:
            config["nav"][i] = {HISTORY: entries}
    return config


def on_files(files: Files, config) -> Files:
    for png in sorted((ROOT / FIGURES).glob("*.png")):
        files.append(File(f"{FIGURES}/{png.name}", src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    # a page one level below docs/ reaches the repository root with one more ../
    depth = page.file.src_uri.count("/")
    return re.sub(r"\]\(((?:\.\./)+)" + FIGURES + "/",
                  lambda m: "](" + "../" * (m.group(1).count("../") - 1) + FIGURES + "/"
                  if m.group(1).count("../") == depth + 1 else m.group(0), markdown)
