"""README.md and docs/ cannot go stale: the layout map is checked against the tree, the
configuration page against the settings, every link against the files, and every domain has its
page."""

from __future__ import annotations

import re
from pathlib import Path

from docker_manager.config_docs import page

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "docker_manager"
README = (ROOT / "README.md").read_text()


def layout() -> str:
    return README.split("<!-- layout:start -->", 1)[1].split("<!-- layout:end -->", 1)[0]


def test_the_configuration_page_is_the_settings_own() -> None:
    written = (ROOT / "docs" / "configuration.md").read_text()
    assert written == page(), "run: python -m docker_manager.config_docs > docs/configuration.md"


def test_the_layout_names_every_top_level_module_and_package() -> None:
    block = layout()
    skipped = {"__init__.py", "__main__.py", "py.typed", "config_docs.py", "__pycache__"}
    for entry in sorted(PACKAGE.iterdir()):
        if entry.name in skipped or (entry.is_dir() and not any(entry.rglob("*.py"))):
            continue  # (a folder a move left with only caches in it is not in a clone)
        shown = entry.name + ("/" if entry.is_dir() else "")
        assert shown in block, f"README's layout does not mention {shown}"
    for named in re.findall(r"^  ([a-z_]+(?:\.py|/))", block, flags=re.M):
        if named in ("unit/", "app/", "integration/", "harness.py", "swarm_lab.py"):
            assert (ROOT / "tests" / named).exists(), named
        else:
            assert (PACKAGE / named).exists() or (ROOT / named).exists(), (
                f"README names {named}, which is gone"
            )


def test_the_layout_lists_the_domains_and_adapters_there_are() -> None:
    block = " ".join(layout().split())
    services = sorted(p.name for p in (PACKAGE / "services").iterdir() if (p / "__init__.py").exists())
    listed = block.split("with its options:", 1)[1].split("adapters/", 1)[0]
    assert sorted(re.findall(r"[a-z_]+", listed)) == services
    adapters = sorted(
        p.stem
        for p in (PACKAGE / "adapters").iterdir()
        if p.name != "__init__.py" and p.name != "__pycache__"
    )
    shown = block.split("one module each:", 1)[1].split("runner/", 1)[0]
    assert sorted(re.sub(r"\(.*?\)", "", item).strip(" /") for item in shown.split(",")) == adapters


def test_every_domain_with_routes_has_its_docs_page_and_tests() -> None:
    routes = {p.stem for p in (PACKAGE / "api" / "routes").glob("*.py")} - {"__init__", "docs"}
    for domain in sorted(routes):
        assert (PACKAGE / "schemas" / f"{domain}.py").exists(), f"schemas/{domain}.py"
        assert (PACKAGE / "services" / domain).is_dir(), f"services/{domain}/"
        assert (ROOT / "docs" / f"{domain}.md").exists(), f"docs/{domain}.md"
        assert list((ROOT / "tests").glob(f"*/test_{domain}*.py")), f"tests/*/test_{domain}*.py"


def test_every_link_in_the_readme_and_docs_leads_somewhere() -> None:
    for document in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", document.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            assert (document.parent / target).exists(), f"{document.name} links {target}, which is not there"
