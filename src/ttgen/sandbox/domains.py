"""Pre-built domain images: one shared environment per task domain (paper §4.2.3).

Synthesized tasks do not each get a hand-written environment: they start ``FROM`` one of a fixed
set of images that pre-install what a domain's tasks commonly need (pandas and scikit-learn for
data science, cryptography libraries for security, ...), and only add their input files. So a
large batch of tasks needs a dozen images instead of thousands, and task generation needs no
Dockerfile repair loop. The generator is shown the Dockerfile of its domain (`dockerfile_text`).

The Dockerfiles are package data (``images/<id>/Dockerfile``). Each starts from a configurable
base (``ARG BASE_IMAGE``; Ubuntu 24.04 as in the paper, mapped through the image aliases like any
FROM), then a block that is byte-for-byte the same in every file (so the engine builds and stores
those layers once), then the domain's own packages. Images are tagged ``ttgen/domain:<id>`` and
built through the same build-context machinery as task environments (aliases, CA bundle); a label
holds the hash of the context and the base image's id, so an unchanged image is never rebuilt.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import re
import tempfile
import time
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ttgen.errors import ConfigError, ImageBuildError
from ttgen.sandbox.base import ImageRef
from ttgen.sandbox.context import BuildContext, make_build_context
from ttgen.settings import Settings

if TYPE_CHECKING:
    from ttgen.sandbox.base import ImageStore

# General first (builds the shared common layers; the cheapest), then the task domains.
DOMAIN_IMAGES: tuple[str, ...] = (
    "general",
    "data_processing",
    "data_querying",
    "data_science",
    "debugging",
    "dependency_management",
    "file_operations",
    "scientific_computing",
    "security",
    "software_engineering",
    "system_administration",
    "model_training",
)
DOMAIN_REPOSITORY = "ttgen/domain"
LABEL_CONTENT = "ttgen.content"  # hash of the build context + the base image's id
LABEL_DOMAIN = "ttgen.domain"
# Shared images install hundreds of MB from PyPI and Debian: more time than a task build gets.
DEFAULT_BUILD_TIMEOUT = 1800.0

_BASE_ARG_RE = re.compile(r"^ARG\s+BASE_IMAGE=.*$", re.MULTILINE)
_COMMON_BLOCK = "# ---- common:"
_DOMAIN_BLOCK = "# ---- domain:"
# Domain images being built by the current task, outermost first: a domain image whose base is
# (through --base / domain_base) one of these would wait on its own lock forever.
_BUILDING: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "ttgen_domain_building", default=()
)


def _check(domain: str) -> str:
    if domain not in DOMAIN_IMAGES:
        raise ConfigError(
            f"unknown domain image {domain!r}; the domains are: {', '.join(DOMAIN_IMAGES)}"
        )
    return domain


def image_ref(domain: str) -> str:
    """The tag of a domain's image, e.g. ``ttgen/domain:data_science``."""
    return f"{DOMAIN_REPOSITORY}:{_check(domain)}"


def domain_of_image(ref: str) -> str | None:
    """The domain id when `ref` names a known domain image (``ttgen/domain:<id>``), else None."""
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return None
    repo = repo.removeprefix("docker.io/")
    return tag if repo == DOMAIN_REPOSITORY and tag in DOMAIN_IMAGES else None


def parse_domain_list(values: Iterable[str]) -> list[str]:
    """``["data_science,security", "general"]`` or ``["all"]`` → known ids in DOMAIN_IMAGES order."""
    wanted: set[str] = set()
    for value in values:
        for item in value.split(","):
            name = item.strip()
            if not name:
                continue
            if name == "all":
                wanted.update(DOMAIN_IMAGES)
            else:
                wanted.add(_check(name))
    return [d for d in DOMAIN_IMAGES if d in wanted]


def dockerfile_text(domain: str, base: str | None = None) -> str:
    """The packaged Dockerfile of `domain`; with `base`, the default of ``ARG BASE_IMAGE``."""
    path = resources.files("ttgen.sandbox").joinpath("images", _check(domain), "Dockerfile")
    text = path.read_text(encoding="utf-8")
    if base is not None:
        if not base.strip() or any(c.isspace() for c in base):
            raise ConfigError(f"base image {base!r} is not an image reference")
        text, n = _BASE_ARG_RE.subn(lambda _m: f"ARG BASE_IMAGE={base}", text, count=1)
        if n != 1:  # pragma: no cover - every packaged Dockerfile has the line (tested)
            raise ConfigError(f"the Dockerfile of domain {domain!r} has no ARG BASE_IMAGE line")
    return text


def domain_description(domain: str) -> str:
    """The one-line description in the second comment line of the domain's Dockerfile."""
    lines = dockerfile_text(domain).splitlines()
    return lines[1].lstrip("# ").strip() if len(lines) > 1 and lines[1].startswith("#") else ""


def domain_packages(domain: str, block: str = "domain") -> dict[str, list[str]]:
    """What a block of the domain's Dockerfile installs: ``{"apt": [...], "pip": [...]}``.

    `block` is "domain" (the domain's own packages) or "common" (those of every domain image)."""
    text = dockerfile_text(domain)
    start = text.find(_DOMAIN_BLOCK if block == "domain" else _COMMON_BLOCK)
    if start < 0:
        return {"apt": [], "pip": []}
    end = text.find(_DOMAIN_BLOCK, start + 1) if block == "common" else -1
    lines = text[start : end if end >= 0 else len(text)].splitlines()
    joined = re.sub(r"\\\n", " ", "\n".join(ln for ln in lines if not ln.lstrip().startswith("#")))
    found: dict[str, list[str]] = {"apt": [], "pip": []}
    for kind, pattern in (("apt", r"apt-get\s+install"), ("pip", r"pip3?\s+install")):
        for m in re.finditer(pattern + r"(?P<args>[^&;\n]*)", joined):
            found[kind] += [a for a in m.group("args").split() if not a.startswith("-")]
    return found


def _context(domain: str, base: str | None, settings: Settings) -> BuildContext:
    with tempfile.TemporaryDirectory(prefix="ttgen-domain-") as tmp:
        Path(tmp, "Dockerfile").write_text(dockerfile_text(domain, base), encoding="utf-8")
        return make_build_context(Path(tmp), settings)


async def _base_ids(
    backend: ImageStore, bases: Sequence[str], *, who: str, prepare: bool
) -> list[str]:
    """The image ids of `bases`; with `prepare`, missing domain images are built and other
    missing images pulled first."""
    if prepare:
        await ensure_domain_bases(backend, bases, who=who)
    ids = []
    for base in bases:
        info = await backend.image_exists(base)
        if info is None and prepare and await backend.pull(base):
            info = await backend.image_exists(base)
        if info is None:
            raise ImageBuildError(
                f"{who}: base image {base!r} is not present locally and cannot be pulled. Build "
                "it, map it to a local image with an alias (e.g. TTGEN_IMAGE_ALIASES="
                "'ubuntu:*=ttgen/base:bookworm', see `ttgen images bootstrap`), or choose another "
                "base with --base / [images] domain_base."
            )
        ids.append(info["Id"])
    return ids


async def domain_content(
    backend: ImageStore, domain: str, *, base: str | None = None, prepare: bool = True
) -> tuple[BuildContext, str]:
    """The build context of a domain image and its content digest (context + base image ids).

    The base is `base`, else Settings.domain_base, else the Dockerfile's default. With `prepare`
    missing base images are pulled (or built, when they are domain images themselves); without,
    a missing base raises ImageBuildError."""
    tag = image_ref(domain)
    if base is None:
        base = backend.settings.domain_base
    ctx = await asyncio.to_thread(_context, domain, base, backend.settings)
    if tag in ctx.base_images:
        raise ConfigError(f"domain image {tag} cannot be built from itself")
    ids = await _base_ids(backend, ctx.base_images, who=f"domain image {tag}", prepare=prepare)
    digest = hashlib.sha256((ctx.digest + "\0" + "\0".join(ids)).encode()).hexdigest()
    return ctx, digest


async def domain_image_state(
    backend: ImageStore, domain: str, *, base: str | None = None
) -> str:
    """The state of a domain's image: "built" (present and up to date), "outdated" (present,
    built from other content) or "missing".

    Builds and pulls nothing."""
    info = await backend.image_exists(image_ref(domain))
    if info is None:
        return "missing"
    labels = (info.get("Config") or {}).get("Labels") or {}
    try:
        _, digest = await domain_content(backend, domain, base=base, prepare=False)
    except ImageBuildError:
        return "outdated"  # its base is gone, so it is not the image a build would make now
    return "built" if labels.get(LABEL_CONTENT) == digest else "outdated"


async def build_domain_image(
    backend: ImageStore,
    domain: str,
    *,
    base: str | None = None,
    force: bool = False,
    timeout: float | None = None,
) -> ImageRef:
    """Build ``ttgen/domain:<domain>`` unless an image of the same content is already tagged.

    The base is `base`, else Settings.domain_base, else the Dockerfile's default (all mapped
    through the image aliases). `force` rebuilds without the engine's layer cache. Concurrent
    calls for one domain build once (the backend's per-tag lock).
    """

    tag = image_ref(domain)
    chain = _BUILDING.get()
    if domain in chain:
        raise ConfigError(
            "domain images built from each other: " + " → ".join(map(image_ref, (*chain, domain)))
        )
    has_ca = backend.settings.extra_ca_cert is not None
    token = _BUILDING.set((*chain, domain))
    try:
        async with backend.build_lock(tag):
            return await _build_locked(backend, domain, tag, base, force, timeout, has_ca)
    finally:
        _BUILDING.reset(token)


async def _build_locked(
    backend: ImageStore,
    domain: str,
    tag: str,
    base: str | None,
    force: bool,
    timeout: float | None,
    has_ca: bool,
) -> ImageRef:
    ctx, digest = await domain_content(backend, domain, base=base)
    if not force:
        info = await backend.image_exists(tag)
        labels = ((info or {}).get("Config") or {}).get("Labels") or {}
        if info is not None and labels.get(LABEL_CONTENT) == digest:
            return ImageRef(tag, "cached", has_ca=has_ca)
    t0 = time.monotonic()
    await backend.build_context(
        ctx,
        tag,
        name=f"domain image {tag}",
        timeout=DEFAULT_BUILD_TIMEOUT if timeout is None else timeout,
        labels={LABEL_CONTENT: digest, LABEL_DOMAIN: domain},
        nocache=force,
    )
    return ImageRef(tag, "built", time.monotonic() - t0, has_ca)


async def ensure_domain_bases(
    backend: ImageStore, bases: Iterable[str], *, who: str, timeout: float | None = None
) -> list[str]:
    """Build the missing domain images among `bases` (FROM lines); returns those that were
    missing and now exist (built here, or meanwhile by a concurrent request).

    Present domain images are used as they are, even when older than the packaged Dockerfile
    (`ttgen images build --domain all` refreshes them)."""
    built = []
    for base in bases:
        domain = domain_of_image(base)
        if domain is None or await backend.image_exists(base) is not None:
            continue
        try:
            await build_domain_image(backend, domain, timeout=timeout)
        except ImageBuildError as exc:
            raise ImageBuildError(
                f"{who}: its base image {base} (a ttgen domain image) could not be built: "
                f"{str(exc).split(chr(10), 1)[0]}",
                exc.log_tail,
                timed_out=exc.timed_out,
            ) from exc
        built.append(base)
    return built
