"""Nothing of the demo shop outside its demo data: the product works for any business.

The demo's knowledge base and profile live in ``knowledge/demo/``; the starter model (trained
from scratch on the demo's corpus) reads it from there. Every other template, static file and
module of the apps must name no shop: the business is the profile's (``knowledge.profile``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEARCHED = [
    "templates",
    "static",
    "chatbot_site",
    "knowledge",
    "conversations",
    "learning",
    "serving",
    "admin_parts",
    "bin",
]
SUFFIXES = {".py", ".html", ".js", ".css", ".json", ".txt", ".md", ""}


def demo_markers() -> list[str]:
    """The demo shop's name, its domain and its contact details (from its own profile)."""
    profile = json.loads((ROOT / "knowledge" / "demo" / "profile.json").read_text())
    name = profile["business_name"]
    emails = re.findall(r"[\w.+-]+@([\w-]+\.[\w.]+)", profile["contact"])
    phones = re.findall(r"\+[\d ]{8,}\d", profile["contact"])
    return [name, name.split()[0], *emails, *phones]


def searched_files(root: Path = ROOT) -> list[Path]:
    files = []
    for top in SEARCHED:
        for path in sorted((root / top).rglob("*")):
            if not path.is_file() or path.suffix not in SUFFIXES or "__pycache__" in path.parts:
                continue
            if path.is_relative_to(root / "knowledge" / "demo"):
                continue
            files.append(path)
    return files


def findings(root: Path = ROOT) -> list[str]:
    """Each file (relative to ``root``) and demo marker it contains."""
    markers = [marker.lower() for marker in demo_markers()]
    found = []
    for path in searched_files(root):
        text = path.read_text(encoding="utf-8", errors="ignore").lower()
        found += [f"{path.relative_to(root)}: {m}" for m in markers if m in text]
    return found


def test_the_markers_are_the_demo_shops():
    markers = demo_markers()
    assert "Northwind Outfitters" in markers and "northwind-outfitters.example" in markers


def test_no_template_static_file_or_module_names_the_demo_shop():
    assert len(searched_files()) > 100
    assert findings() == []


def test_the_search_finds_a_template_naming_it_but_not_the_demo_data(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "page.html").write_text("<title>Northwind Outfitters</title>")
    (tmp_path / "knowledge" / "demo").mkdir(parents=True)
    (tmp_path / "knowledge" / "demo" / "corpus.json").write_text('{"company": "Northwind"}')

    assert findings(tmp_path) == [
        "templates/page.html: northwind outfitters",
        "templates/page.html: northwind",
    ]
