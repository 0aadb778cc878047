"""The documentation: the MkDocs site builds with --strict, every page is in its navigation, and the
README stays one or two screens whose local links lead somewhere."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 200


def nav_pages(node) -> list[str]:
    """Every page file named in an mkdocs ``nav`` (nested sections included; external URLs left out)."""
    if isinstance(node, str):
        return [] if "://" in node else [node]
    if isinstance(node, list):
        return [page for item in node for page in nav_pages(item)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in nav_pages(value)]
    return []


def test_site_builds_strictly(tmp_path):
    # strict: any warning fails, and mkdocs.yml's `validation` makes broken links, missing anchors,
    # absolute links and pages outside the nav warnings; mkdocstrings' docstring warnings count too
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    site = tmp_path / "site"
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(site)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "WARNING" not in run.stderr, run.stderr
    assert (site / "index.html").is_file()
    api = (site / "api.html").read_text(encoding="utf-8")
    assert "load_enhancer" in api and "Rebuild the enhancer" in api  # the reference is generated from docstrings


def test_every_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["docs_dir"] == "docs" and config.get("strict") is True
    in_nav = nav_pages(config["nav"])
    on_disk = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(set(on_disk) - set(in_nav)) == [], "pages missing from mkdocs.yml's nav"
    assert sorted(set(in_nav) - set(on_disk)) == [], "nav entries without a page"
    assert len(in_nav) == len(set(in_nav)), "a page is in the nav twice"
    # the strict build turns these into failures (mkdocs reports them only as INFO by default)
    assert {key: config["validation"].get(key) for key in ("omitted_files", "unrecognized_links", "anchors")} == \
        {"omitted_files": "warn", "unrecognized_links": "warn", "anchors": "warn"}


def test_readme_is_short_and_its_links_resolve():
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t.split("#")[0] for t in targets if "://" not in t and not t.startswith(("#", "mailto:"))]
    assert local, "the README links nothing in the repository"
    missing = [t for t in local if t and not (ROOT / t).exists()]
    assert missing == [], f"README.md links to missing files: {missing}"
