"""The images of the container tier (tests/containers/), and local stand-ins for those no registry serves.

Images the Dockerfile and the compose file name are pulled when a registry answers; otherwise a
stand-in is built from Debian 12 packages (and SecantusDB from PyPI) under the same name, labelled
``lucid.standin``, and kept: later runs find it and build nothing. The engine that builds them is
``container_engine.py``; the scripts the backend stand-ins run are ``standin_entrypoints.py``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.container_engine import HOST_CA_BUNDLE, Engine, EngineError, Timings
from tests.support.standin_entrypoints import MONGO_ENTRYPOINT, MONGOSH, REDIS_ENTRYPOINT

STANDIN_LABEL = "lucid.standin"
RECIPE_LABEL = "lucid.standin.recipe"

BUILDER_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
RUNTIME_IMAGE = "gcr.io/distroless/python3-debian12:nonroot"
MONGO_IMAGE = "docker.io/library/mongo:7.0.28"
REDIS_IMAGE = "docker.io/library/redis:7.2.11-alpine"
PROJECT_IMAGE = "pickme/lucid-rdp-controller:latest-arm64"

# The distroless python3-debian12 image's packages, less nothing a Python service needs: no dpkg,
# no shell, no perl, no debconf.
RUNTIME_PACKAGES: tuple[str, ...] = (
    "base-files",
    "netbase",
    "tzdata",
    "media-types",
    "libc6",
    "gcc-12-base",
    "libgcc-s1",
    "libssl3",
    "libffi8",
    "zlib1g",
    "libexpat1",
    "libbz2-1.0",
    "liblzma5",
    "libsqlite3-0",
    "libncursesw6",
    "libtinfo6",
    "libreadline8",
    "readline-common",
    "libuuid1",
    "libdb5.3",
    "libgdbm6",
    "libcrypt1",
    "libnsl2",
    "libtirpc3",
    "libtirpc-common",
    "libgssapi-krb5-2",
    "libk5crypto3",
    "libkrb5-3",
    "libkrb5support0",
    "libkeyutils1",
    "libcom-err2",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "python3.11-minimal",
)


# --- stand-in images -------------------------------------------------------------------------


def _debian_sources() -> tuple[str, str]:
    """The Debian mirror and security mirror apt already uses here (deb822 or one-line format)."""
    mirror, security = "http://deb.debian.org/debian", "http://deb.debian.org/debian-security"
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    text = deb822.read_text(encoding="utf-8") if deb822.exists() else ""
    for line in text.splitlines():
        if line.startswith("URIs:"):
            uri = line.split(":", 1)[1].strip().split()[0]
            if "security" in uri:
                security = uri
            else:
                mirror = uri
    return mirror, security


def _apt_sources_text() -> str:
    mirror, security = _debian_sources()
    return (
        f"deb {mirror} bookworm main\n"
        f"deb {mirror} bookworm-updates main\n"
        f"deb {security} bookworm-security main\n"
    )


def _import_rootfs(
    engine: Engine, rootfs: Path, image: str, changes: list[str], arch: str | None = None
) -> None:
    tar = subprocess.run(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], capture_output=True, check=True
    )
    args = ["import", *(["--arch", arch] if arch else [])]
    for change in changes:
        args += ["--change", change]
    engine.run(*args, "-", image, input_bytes=tar.stdout, timeout=900)


def _privileged(cmd: list[str], **kwargs: Any) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=1800, **kwargs)


def _apt_download(packages: tuple[str, ...], target: Path, arch: str | None = None) -> None:
    """``apt-get download`` the packages into ``target``: the host's own architecture, or ``arch``
    through a private apt state (its own lists and cache) that leaves the host's apt as it is."""
    if arch is None:
        _privileged(["apt-get", "download", *packages], cwd=target)
        return
    state = target.parent / f"apt-{arch}"
    for sub in ("lists/partial", "cache/archives/partial", "sources.list.d"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text(_apt_sources_text(), encoding="utf-8")
    options: list[str] = []
    for key, value in (
        ("APT::Architecture", arch),
        ("APT::Architectures", arch),
        ("APT::Sandbox::User", "root"),
        ("Dir::Etc::SourceList", str(state / "sources.list")),
        ("Dir::Etc::SourceParts", str(state / "sources.list.d")),
        ("Dir::State::Lists", str(state / "lists")),
        ("Dir::Cache", str(state / "cache")),
        ("Dir::State::status", "/dev/null"),
    ):
        options += ["-o", f"{key}={value}"]
    _privileged(["apt-get", *options, "update"])
    _privileged(["apt-get", *options, "download", *packages], cwd=target)


def build_builder_standin(engine: Engine, work: Path, arch: str | None = None) -> str:
    """The builder stand-in for the host's architecture, or for ``arch`` (a Debian name such as
    ``arm64``: debootstrap then runs the new root's programs under QEMU through binfmt_misc)."""
    if shutil.which("debootstrap") is None:
        raise EngineError("debootstrap is missing (apt-get install debootstrap)")
    rootfs = work / "builder-rootfs"
    mirror, _ = _debian_sources()
    _privileged(
        [
            "debootstrap",
            "--variant=minbase",
            *([f"--arch={arch}"] if arch else []),
            "--include=python3,python3-pip,python3-venv,ca-certificates",
            "bookworm",
            str(rootfs),
            mirror,
        ]
    )
    (rootfs / "etc/apt/sources.list").write_text(_apt_sources_text(), encoding="utf-8")
    (rootfs / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
    for path in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (rootfs / path).glob("*"):
            if item.is_file():
                item.unlink()
    (rootfs / "usr/local/bin/python").symlink_to("/usr/bin/python3")
    _import_rootfs(
        engine,
        rootfs,
        BUILDER_IMAGE,
        [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            'CMD ["python3"]',
            f"LABEL {STANDIN_LABEL}=debootstrap-bookworm-minbase+python3.11+pip",
            f"LABEL {RECIPE_LABEL}={recipe(BUILDER_IMAGE, arch)}",
        ],
        arch,
    )
    return "Debian 12 minbase (debootstrap) with Debian's python3.11, pip and venv"


def build_runtime_standin(engine: Engine, work: Path, arch: str | None = None) -> str:
    """The runtime stand-in for the host's architecture, or for ``arch`` (``arm64``: its packages)."""
    debs = work / "runtime-debs"
    rootfs = work / "runtime-rootfs"
    debs.mkdir()
    rootfs.mkdir()
    _apt_download(RUNTIME_PACKAGES, debs, arch)
    for deb in sorted(debs.glob("*.deb")):
        _privileged(["dpkg-deb", "-x", str(deb), str(rootfs)])
    for shell in ("bin/sh", "bin/bash", "bin/dash", "usr/bin/sh", "usr/bin/bash", "usr/bin/dash"):
        (rootfs / shell).unlink(missing_ok=True)
    (rootfs / "usr/bin/python3").unlink(missing_ok=True)
    (rootfs / "usr/bin/python3").symlink_to("python3.11")
    etc = rootfs / "etc"
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
        "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
        encoding="utf-8",
    )
    (etc / "group").write_text("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n", encoding="utf-8")
    for directory, mode in (("tmp", 0o1777), ("root", 0o700), ("home/nonroot", 0o700)):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
        (rootfs / directory).chmod(mode)
    os.chown(rootfs / "home/nonroot", 65532, 65532)
    (etc / "ssl/certs").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HOST_CA_BUNDLE, etc / "ssl/certs/ca-certificates.crt")
    _import_rootfs(
        engine,
        rootfs,
        RUNTIME_IMAGE,
        [
            "USER 65532",
            "WORKDIR /home/nonroot",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
            'ENTRYPOINT ["/usr/bin/python3.11"]',
            f"LABEL {STANDIN_LABEL}=debian12-debs-unpacked-no-shell",
            f"LABEL {RECIPE_LABEL}={recipe(RUNTIME_IMAGE, arch)}",
        ],
        arch,
    )
    return (
        f"{len(RUNTIME_PACKAGES)} Debian 12 packages (python3.11-minimal, libpython3.11-stdlib, libc6, "
        "libssl3, ...) fetched with apt-get download and unpacked with dpkg-deb -x: no dpkg database, "
        "no shell, user nonroot 65532"
    )


def _build_from_context(
    engine: Engine, work: Path, image: str, containerfile: str, files: dict[str, str]
) -> None:
    context = work / image.replace("/", "_").replace(":", "_")
    context.mkdir()
    (context / "Containerfile").write_text(textwrap.dedent(containerfile), encoding="utf-8")
    for name, text in files.items():
        (context / name).write_text(text, encoding="utf-8")
        (context / name).chmod(0o755)
    args = ["build", "--pull=never", "-t", image, *engine.build_volume_args()]
    if engine.is_podman:
        args += ["--format", "docker"]
    engine.run(*args, "-f", str(context / "Containerfile"), str(context), timeout=1800)


def build_redis_standin(engine: Engine, work: Path) -> str:
    _build_from_context(
        engine,
        work,
        REDIS_IMAGE,
        f"""\
        FROM {BUILDER_IMAGE}
        RUN apt-get update && apt-get install -y --no-install-recommends redis-server redis-tools \\
            && rm -rf /var/lib/apt/lists/* && mkdir -p /data
        COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
        WORKDIR /data
        VOLUME /data
        EXPOSE 6379
        LABEL {STANDIN_LABEL}="debian12-redis-server" {RECIPE_LABEL}="{recipe(REDIS_IMAGE)}"
        ENTRYPOINT ["docker-entrypoint.sh"]
        CMD ["redis-server"]
        """,
        {"docker-entrypoint.sh": REDIS_ENTRYPOINT},
    )
    return "Debian 12's redis-server and redis-cli on the builder stand-in, with an entrypoint like redis's"


def build_mongo_standin(engine: Engine, work: Path) -> str:
    _build_from_context(
        engine,
        work,
        MONGO_IMAGE,
        f"""\
        FROM {BUILDER_IMAGE}
        RUN pip install --no-cache-dir "secantusdb>=0.7.0b3" "pymongo>=4.13" && mkdir -p /data/db
        COPY entrypoint.py /usr/local/bin/docker-entrypoint.py
        COPY mongosh /usr/local/bin/mongosh
        VOLUME /data/db
        EXPOSE 27017
        LABEL {STANDIN_LABEL}="secantusdb-from-pypi" {RECIPE_LABEL}="{recipe(MONGO_IMAGE)}"
        ENTRYPOINT ["/usr/local/bin/docker-entrypoint.py"]
        """,
        {"entrypoint.py": MONGO_ENTRYPOINT, "mongosh": MONGOSH},
    )
    return (
        "SecantusDB (PyPI; a MongoDB-compatible server in Python) on the builder stand-in, an "
        "entrypoint creating MONGO_INITDB_ROOT_USERNAME with --auth, and a `mongosh` that answers "
        "the compose health check's ping"
    )


STANDINS: list[tuple[str, Callable[[Engine, Path], str]]] = [
    (BUILDER_IMAGE, build_builder_standin),
    (RUNTIME_IMAGE, build_runtime_standin),
    (REDIS_IMAGE, build_redis_standin),
    (MONGO_IMAGE, build_mongo_standin),
]


def recipe(image: str, arch: str | None = None) -> str:
    """A digest of what makes a stand-in: a changed recipe rebuilds the cached image. (``arch``:
    a foreign-architecture stand-in's; the host's own recipes do not name their architecture.)"""
    parts = {
        BUILDER_IMAGE: _apt_sources_text() + "python3,python3-pip,python3-venv,ca-certificates",
        RUNTIME_IMAGE: " ".join(RUNTIME_PACKAGES),
        REDIS_IMAGE: REDIS_ENTRYPOINT,
        MONGO_IMAGE: MONGO_ENTRYPOINT + MONGOSH,
    }
    text = parts[image] + (f" arch={arch}" if arch else "")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_images(engine: Engine, timings: Timings) -> dict[str, str]:
    """Make every base and backend image present; returns image -> what it is (stand-in or real)."""
    found: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="lucid-standins-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        for image, build in STANDINS:
            if engine.exists(image):
                labels = engine.inspect("image", image)["Config"].get("Labels") or {}
                made_of = labels.get(STANDIN_LABEL)
                if not made_of:
                    found[image] = "real image (present)"
                    continue
                if labels.get(RECIPE_LABEL) == recipe(image):
                    found[image] = f"STAND-IN (cached; {made_of})"
                    continue
                timings.say(f"[containers] stand-in {image} is of an older recipe: rebuilding it")
            elif engine.run("pull", image, check=False, timeout=600).returncode == 0:
                found[image] = "real image (pulled)"
                continue
            else:
                timings.say(f"[containers] {image}: no registry serves it here, building a stand-in")
            with timings.step(f"build stand-in {image}"):
                found[image] = "STAND-IN (built now): " + build(engine, work)
    return found
