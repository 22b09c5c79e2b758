"""Parsers for the deployment checks: Dockerfile, .dockerignore, compose file, env templates.

Nothing here needs a Docker engine: the files are read as text and checked against the settings
class, the repository tree, hadolint and the Compose Specification's JSON schema.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
DOCKERFILE = ROOT / "Dockerfile.rdp-controller"
DEMO_DOCKERFILE = ROOT / "configs" / "demo-xrdp" / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_DIR = ROOT / "configs" / "environment"
SERVICE_ENV_TEMPLATE = ROOT / "rdp-controller" / "config" / "env.rdp-controller.template"
DEFAULT_LUCID_ROOT = "/mnt/myssd/Lucid/Lucid"
LUCID_ROOT_PREFIX = "${LUCID_ROOT:-" + DEFAULT_LUCID_ROOT + "}"

# The env files of docker-compose.yml, in the template's env_file order (section 6.1).
ENV_FILE_NAMES = ("secrets", "core", "application", "foundation", "rdp-controller")

# Variables of the env templates and the compose file that are not RdpControllerSettings fields.
# Each is used by Compose itself (not by the service), or read by the configuration loader.
COMPOSE_ONLY = {
    "LUCID_ROOT": "host path prefix of the env files and bind mounts in docker-compose.yml",
    "MONGODB_USER": "the root user lucid-mongodb creates; pasted into MONGODB_URL",
    "MONGODB_PASSWORD": "the root password lucid-mongodb creates; pasted into MONGODB_URL",
    "REDIS_PASSWORD": "lucid-redis's --requirepass; pasted into REDIS_URL",
    "DEMO_XRDP_PASSWORD": "password of the demo user on the demo RDP host (profile demo)",
}
LOADER_ONLY = {
    "RDP_CONTROLLER_CONFIG_FILE": "read by RdpControllerConfig (rdp-controller/config.py), not a setting",
}

# --------------------------------------------------------------------------------------------
# YAML as Compose and GitHub read it (YAML 1.2 booleans: `on`, `yes`, `no` stay strings)
# --------------------------------------------------------------------------------------------


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with only true/false as booleans, like Compose's and GitHub's parsers."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=Yaml12Loader)  # a SafeLoader subclass


# --------------------------------------------------------------------------------------------
# Compose variable interpolation (the subset the compose file uses)
# --------------------------------------------------------------------------------------------

_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(LookupError):
    """A `${NAME:?message}` whose variable is unset or empty."""


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """Substitute ${NAME}, ${NAME:-x}, ${NAME-x}, ${NAME:?err}, ${NAME?err} and $$ as Compose does."""
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        present = name in variables
        current = variables.get(name, "")
        if op in (":-", "-"):
            use_default = not current if op == ":-" else not present
            return arg if use_default else current
        if op in (":?", "?"):
            missing = not current if op == ":?" else not present
            if missing:
                raise MissingVariable(f"{name}: {arg}")
            return current
        return current

    return _INTERPOLATION.sub(replace, value)


# --------------------------------------------------------------------------------------------
# Env templates
# --------------------------------------------------------------------------------------------

_ENV_LINE = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


@dataclass(frozen=True)
class EnvEntry:
    """One variable of an env template: set (`NAME=value`) or shown at its default (`# NAME=value`)."""

    file: str
    line: int
    name: str
    active: bool
    doc: str  # the comment lines directly above


def parse_env_template(path: Path) -> list[EnvEntry]:
    entries: list[EnvEntry] = []
    doc: list[str] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        match = _ENV_LINE.match(line)
        if match:
            entries.append(
                EnvEntry(path.name, number, match["name"], match["comment"] is None, " ".join(doc).strip())
            )
            doc = []
        elif line.startswith("#"):
            doc.append(line.lstrip("#").strip())
        else:
            doc = []
    return entries


def env_values(text: str) -> dict[str, str]:
    """The values an env file sets, with ${...} resolved as `docker compose --env-file` does."""
    values = dotenv_values(stream=io.StringIO(text), interpolate=True)
    return {key: value or "" for key, value in values.items()}


def template_path(name: str) -> Path:
    return ENV_DIR / f".env.{name}.template"


# --------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int
    stage: int  # 0 = first FROM


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped (as BuildKit reads them)."""
    instructions: list[Instruction] = []
    stage = -1
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments (also inside a continuation) and blank lines
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(raw.rstrip()[:-1])
            continue
        pending.append(raw)
        text = "".join(pending).strip()
        pending = []
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), start, stage))
    return instructions


def split_flags(args: str) -> tuple[dict[str, str], str]:
    """`--from=builder --chown=1:1 a b` -> ({'from': 'builder', 'chown': '1:1'}, 'a b')."""
    flags: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        key, _, value = flag[2:].partition("=")
        flags[key] = value
        rest = rest.lstrip()
    return flags, rest


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), args
    return value


# --------------------------------------------------------------------------------------------
# .dockerignore (moby/patternmatcher semantics)
# --------------------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", i)
            out += "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]"
            i = end
        else:
            out += re.escape(char)
        i += 1
    return re.compile(out + r"\Z")


def dockerignore_matcher(path: Path) -> Callable[[str], bool]:
    """A function telling whether a context-relative path is left out of the build context."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line[1:].strip() if exception else line
        pattern = pattern.strip("/") if pattern not in ("/",) else pattern
        rules.append((exception, _pattern_regex(pattern)))

    def excluded(relative: str) -> bool:
        parts = relative.strip("/").split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for exception, regex in rules:
            if any(regex.match(candidate) for candidate in candidates):
                result = not exception
        return result

    return excluded
