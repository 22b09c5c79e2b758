"""The README stays true: its configuration table lists every setting with its real default."""

from __future__ import annotations

import re
from pathlib import Path

from rdp_controller.config import RdpControllerSettings

README = Path(__file__).resolve().parents[3] / "README.md"
ROW = re.compile(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", re.MULTILINE)


def table() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Configuration") : text.index("\n## ", text.index("## Configuration") + 5)]
    return {name: default.strip() for name, default in ROW.findall(section)}


def test_every_setting_is_in_the_configuration_table() -> None:
    documented = table()
    missing = sorted(set(RdpControllerSettings.model_fields) - set(documented))
    assert missing == [], f"README configuration table lacks {missing}"


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
