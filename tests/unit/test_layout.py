"""The unit tier mirrors the source (docs/testing.md): ``tests/unit/<package>/.../test_<module>.py``
tests ``<package>/.../<module>.py``, and ``test_<module>_<aspect>.py`` one aspect of it when its
tests are split. A few checks are about the repository rather than a module; they are named here.

The test folders are named like the packages (``tests/unit/protocol``), so this also checks that
they do not shadow them: pytest runs with ``--import-mode=importlib`` and they are not packages.
"""

from __future__ import annotations

import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "tests" / "unit"
SOURCES = {
    "rdp_controller": "rdp-controller",
    "common": "common",
    "security": "security",
    "protocol": "protocol",
}
# About the repository, not a module: the deployment files, the dependency rule, the docs, this file.
REPOSITORY_LEVEL = {"deploy", "test_dependency_rule.py", "test_docs.py", "test_layout.py"}


def module_of(test: Path) -> str | None:
    """The source module ``test`` is about, or None when no module matches its name."""
    package, *folders = test.relative_to(UNIT).parent.parts
    source = ROOT / SOURCES[package] / Path(*folders)
    name = test.stem.removeprefix("test_")
    for module in sorted(source.glob("*.py"), key=lambda path: -len(path.stem)):
        if name == module.stem or name.startswith(module.stem + "_"):
            return str(module.relative_to(ROOT))
    return None


def test_every_unit_test_file_names_a_module_of_the_source() -> None:
    strays = []
    for test in sorted(UNIT.rglob("test_*.py")):
        top = test.relative_to(UNIT).parts[0]
        if top in REPOSITORY_LEVEL:
            continue
        if top not in SOURCES or module_of(test) is None:
            strays.append(str(test.relative_to(ROOT)))
    assert strays == [], f"not tests/unit/<package>/test_<module>.py of an existing module: {strays}"


def test_only_the_named_entries_sit_outside_the_package_folders() -> None:
    present = {
        path.relative_to(UNIT).parts[0] for path in UNIT.rglob("*.py") if "__pycache__" not in path.parts
    }
    assert present - set(SOURCES) <= REPOSITORY_LEVEL, sorted(present - set(SOURCES))


def test_the_test_folders_do_not_shadow_the_packages() -> None:
    for package, folder in SOURCES.items():
        imported = importlib.import_module(package)
        assert imported.__file__ is not None
        assert Path(imported.__file__).resolve().parent == ROOT / folder, imported.__file__
        assert not list((UNIT / package).rglob("__init__.py")), f"tests/unit/{package} must not be a package"
