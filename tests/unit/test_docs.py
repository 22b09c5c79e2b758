"""The docs stay true: the configuration table lists every setting with its real default, and the
README stays the short page that points to them."""

from __future__ import annotations

import re
from pathlib import Path

from rdp_controller.config import RdpControllerSettings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
ROW = re.compile(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", re.MULTILINE)


def table() -> dict[str, str]:
    return {name: default.strip() for name, default in ROW.findall(CONFIGURATION.read_text(encoding="utf-8"))}


def test_every_setting_is_in_the_configuration_table() -> None:
    documented = table()
    missing = sorted(set(RdpControllerSettings.model_fields) - set(documented))
    assert missing == [], f"docs/configuration.md's table lacks {missing}"


def test_documented_defaults_match_the_code() -> None:
    documented = table()
    for name, field in RdpControllerSettings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        shown = documented[name]
        if default in ("", None):
            assert shown.startswith("empty"), (name, shown)
        elif isinstance(default, bool):
            assert shown == f"`{str(default).lower()}`", (name, shown)
        elif isinstance(default, list):
            assert shown == "`[]`", (name, shown)
        else:
            assert shown == f"`{default}`", (name, shown)


def test_readme_is_short_and_every_page_it_links_exists() -> None:
    text = README.read_text(encoding="utf-8")
    assert text.count("\n") <= 150, "the README is the front page: the rest goes in docs/"
    assert "make run" in text.split("\n## ")[1] and "make test" in text.split("\n## ")[1]  # the quick start
    links = re.findall(r"\]\((docs/[^)]+)\)", text)
    assert links and all((ROOT / link).is_file() for link in links), links
    documented = {Path(link).name for link in links}
    assert documented == {p.name for p in (ROOT / "docs").glob("*.md")}, "every docs/ page is linked"
