"""`ttgen images bootstrap`: a base image from Debian's archive, for machines without a registry.

debootstrap writes a minimal Debian root file system into a temporary folder; it is streamed as a
tar straight into the engine's image import (no intermediate file). The image has what terminal
tasks and agents expect: bash, python3 with pip and venv, tmux, curl, git, procps and CA
certificates, with WORKDIR /app like the Terminal-Bench base images.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import aiodocker

from ttgen.errors import SandboxError, TtgenError

DEFAULT_TAG = "ttgen/base:bookworm"
DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = (
    "bash",
    "ca-certificates",
    "python3",
    "python3-pip",
    "python3-venv",
    "python-is-python3",
    "tmux",
    "curl",
    "git",
    "procps",
    "less",
    "xz-utils",
)
IMAGE_CHANGES = (
    "ENV LANG=C.UTF-8",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV DEBIAN_FRONTEND=noninteractive",
    # Debian's pip refuses to install into the system Python without this (PEP 668); task images
    # written for Docker Hub's images expect `pip install` to work.
    "ENV PIP_BREAK_SYSTEM_PACKAGES=1",
    "WORKDIR /app",
    'CMD ["bash"]',
)


@dataclass
class BootstrapResult:
    tag: str
    image_id: str
    seconds: float
    packages: tuple[str, ...]


async def bootstrap_base_image(
    docker: aiodocker.Docker,
    *,
    tag: str = DEFAULT_TAG,
    suite: str = DEFAULT_SUITE,
    mirror: str = DEFAULT_MIRROR,
    extra_packages: tuple[str, ...] = (),
    workdir: Path | None = None,
    on_line: Callable[[str], None] | None = None,
) -> BootstrapResult:
    if shutil.which("debootstrap") is None:
        raise TtgenError(
            "debootstrap is not installed (on Debian/Ubuntu: apt-get install debootstrap)"
        )
    if os.geteuid() != 0:
        raise TtgenError(
            "debootstrap needs root: run `ttgen images bootstrap` as root (e.g. with sudo)"
        )
    packages = tuple(dict.fromkeys(BASE_PACKAGES + tuple(extra_packages)))
    t0 = time.monotonic()
    root_parent = Path(tempfile.mkdtemp(prefix="ttgen-rootfs-", dir=workdir))
    rootfs = root_parent / "rootfs"
    try:
        await _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                suite,
                str(rootfs),
                mirror,
            ],
            on_line,
            what="debootstrap",
        )
        _finish_rootfs(rootfs, suite, mirror)
        image_id = await _import_rootfs(docker, rootfs, tag)
    finally:
        await asyncio.to_thread(shutil.rmtree, root_parent, True)
    return BootstrapResult(tag, image_id, time.monotonic() - t0, packages)


def _finish_rootfs(rootfs: Path, suite: str, mirror: str) -> None:
    (rootfs / "app").mkdir(exist_ok=True)
    sources = rootfs / "etc/apt/sources.list"
    lines = [f"deb {mirror} {suite} main"]
    if suite not in ("sid", "unstable"):
        lines.append(f"deb {mirror} {suite}-updates main")
    sources.write_text("\n".join(lines) + "\n")
    # Keep the image small: package lists and caches are fetched again by `apt-get update`.
    for sub in ("var/lib/apt/lists", "var/cache/apt/archives"):
        d = rootfs / sub
        if d.is_dir():
            for entry in d.iterdir():
                if entry.is_file() and entry.name not in ("lock",):
                    entry.unlink()


async def _run(argv: list[str], on_line: Callable[[str], None] | None, what: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    tail: list[str] = []
    assert proc.stdout is not None
    async for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip()
        tail = [*tail[-30:], line]
        if on_line:
            on_line(line)
    rc = await proc.wait()
    if rc != 0:
        raise TtgenError(f"{what} failed with exit code {rc}:\n" + "\n".join(tail))


async def _import_rootfs(docker: aiodocker.Docker, rootfs: Path, tag: str) -> str:
    """Stream `tar -C rootfs -c .` into POST /images/create?fromSrc=- (docker import)."""
    proc = await asyncio.create_subprocess_exec(
        "tar", "--numeric-owner", "-C", str(rootfs), "-c", ".",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    repo, _, version = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")

    async def body():
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(1 << 20):
            yield chunk

    # `changes` repeats, which aiodocker's dict params cannot express: build the query here.
    query = urlencode(
        [("fromSrc", "-"), ("repo", repo), ("tag", version)]
        + [("changes", c) for c in IMAGE_CHANGES]
    )
    try:
        async with docker._query(
            f"images/create?{query}",
            method="POST",
            data=body(),
            headers={"Content-Type": "application/x-tar"},
            timeout=None,
        ) as resp:
            text = await resp.text()
    except aiodocker.DockerError as exc:
        raise SandboxError(f"image import failed: {exc.message}") from exc
    rc = await proc.wait()
    if rc != 0:
        err = (await proc.stderr.read()).decode(errors="replace") if proc.stderr else ""
        raise SandboxError(f"tar of the root file system failed ({rc}): {err}")
    if '"error"' in text:
        raise SandboxError(f"image import failed: {text[-500:]}")
    info = await docker.images.inspect(tag)
    return info["Id"]
