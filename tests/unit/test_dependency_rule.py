"""The dependency rule of docs/architecture.md, checked on the source (a small AST walk).

routes -> services -> repositories / protocol / integration clients; nothing lower imports higher;
no module reaches into another object's private names, into a repository's MongoDB collection,
or through another service to its store.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "rdp-controller": "rdp_controller",
    "common": "common",
    "security": "security",
    "protocol": "protocol",
}
DEV_TOOLS = ("common.devstack", "common.devsession")  # make run / make session: on top of everything

# Layers, lowest first: a module may import its own layer and the ones below.
LAYERS: list[tuple[str, ...]] = [
    ("protocol", "common"),  # common: errors, backend clients, the xrdp launcher (common.log: above)
    ("security",),
    (
        "common.log",
        "rdp_controller.models",
        "rdp_controller.server_models",
        "rdp_controller.connection_models",
        "rdp_controller.system_models",
        "rdp_controller.config",
        "rdp_controller.metrics",
    ),
    ("rdp_controller.session_states", "rdp_controller.storage"),
    ("rdp_controller",),  # the services: everything not named elsewhere
    ("rdp_controller.runtime", "rdp_controller.http_errors", "rdp_controller.middleware"),
    ("rdp_controller.routes", "rdp_controller.main", "rdp_controller.entrypoint"),
    ("rdp_controller.api_document",),  # make openapi: the document of the routes
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    parts[0] = PACKAGES[parts[0]]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The layer of the longest prefix that names it."""
    best, rank = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank >= 0, f"{module} is in no layer"
    return rank


def sources() -> list[Path]:
    return [path for folder in PACKAGES for path in sorted((ROOT / folder).rglob("*.py"))]


def imported(path: Path, module: str) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES.values()}


def test_nothing_lower_imports_higher() -> None:
    broken = []
    for path in sources():
        module = module_name(path)
        if module.startswith(DEV_TOOLS):
            continue
        for target in imported(path, module):
            if target.startswith(DEV_TOOLS):
                broken.append(f"{module} imports the dev tool {target}")
            elif layer_of(target) > layer_of(module):
                broken.append(
                    f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
                )
    assert broken == [], "\n".join(broken)


def test_routes_call_services_not_repositories_nor_the_runtime() -> None:
    """Routes get their services through routes/deps.py's aliases; only deps.py reads the runtime."""
    for path in sorted((ROOT / "rdp-controller" / "routes").glob("*.py")):
        module = module_name(path)
        forbidden = ("rdp_controller.storage",) + (
            () if path.name == "deps.py" else ("rdp_controller.runtime",)
        )
        reaching = sorted(t for t in imported(path, module) if t.startswith(forbidden))
        assert reaching == [], f"{module} imports {reaching}"


def test_no_reaching_into_other_objects() -> None:
    """No ``other._private``, no ``other.collection`` outside storage/, no ``self.service.store``."""
    broken = []
    for path in sources():
        module = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            own = isinstance(owner, ast.Name) and owner.id in ("self", "cls")
            where = f"{module}:{node.lineno} {ast.unparse(node)}"
            if node.attr.startswith("_") and not node.attr.startswith("__") and not own:
                broken.append(f"{where}: another object's private name")
            if node.attr == "collection" and not own and not module.startswith("rdp_controller.storage"):
                broken.append(f"{where}: a repository's collection")
            if node.attr == "store" and isinstance(owner, ast.Attribute) and not module.endswith("runtime"):
                broken.append(f"{where}: another service's store")
    assert broken == [], "\n".join(broken)


def test_every_module_is_in_a_layer() -> None:
    for path in sources():
        layer_of(module_name(path))
