"""Write one benchmark's section of docs/benchmarks.md, leaving the other sections alone."""

from __future__ import annotations

import platform
import re
from datetime import date
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEvery figure here is written by a script in `benchmarks/`; rerun it to refresh its section.\n"


def machine() -> str:
    """One line naming where the figures were taken."""
    import os

    cpu = platform.processor() or platform.machine()
    return f"{date.today()}, {os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, torch {torch.__version__}"


def write_section(name: str, markdown: str, doc: Path = DOC) -> None:
    """Replace (or append) the text between ``<!-- name -->`` and ``<!-- /name -->``."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    text = doc.read_text() if doc.exists() else HEADER
    block = f"<!-- {name} -->\n{markdown.strip()}\n<!-- /{name} -->"
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)
