"""Build contexts: what is sent to the Docker engine to build a task's image.

The context is the task's environment/ folder, filtered by its .dockerignore, with the Dockerfile
rewritten for image aliases (FROM references mapped to local images) and, when an extra CA bundle
is configured, a copy of that bundle plus the instructions that make pip, requests, curl, git and
node trust it. The image tag is a hash of exactly these bytes, so every distinct environment is
built once and tasks with identical environments share one image.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import io
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ttgen.settings import Settings, host_ca_bundle

# Bump when the way contexts are assembled changes, so old images are not reused by mistake.
RECIPE_VERSION = "1"
IMAGE_REPOSITORY = "ttgen/env"
CA_CONTEXT_PATH = ".ttgen/ca-bundle.crt"
CA_CONTAINER_PATH = "/etc/ttgen/ca-bundle.crt"
# Tools that read a CA bundle from the environment.
CA_ENV_VARS = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
    "UV_NATIVE_TLS_CA_FILE",
)

_FROM_RE = re.compile(
    r"^(?P<lead>\s*FROM\s+)(?P<flags>(?:--\S+\s+)*)(?P<image>\S+)(?P<rest>(?:\s+AS\s+(?P<stage>\S+))?\s*)$",
    re.IGNORECASE,
)
_ARG_RE = re.compile(
    r"^\s*ARG\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:=(?P<value>\S*))?\s*$", re.IGNORECASE
)
_VAR_RE = re.compile(r"\$(?:\{(?P<a>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<b>[A-Za-z_][A-Za-z0-9_]*))")


def ca_bundle_bytes(extra_ca: Path) -> bytes:
    """The host's default trust store followed by the extra CA file, without repeating it."""
    extra = extra_ca.read_bytes()
    host = host_ca_bundle()
    base = host.read_bytes() if host is not None else b""
    if not base or extra.strip() in base:
        return base or extra
    return base.rstrip(b"\n") + b"\n" + extra


def ca_env() -> dict[str, str]:
    return {name: CA_CONTAINER_PATH for name in CA_ENV_VARS}


def _ca_instructions() -> list[str]:
    """The Dockerfile lines that put the CA bundle in an image and point the tools at it."""
    env = " ".join(f"{k}={v}" for k, v in ca_env().items())
    return [f"COPY {CA_CONTEXT_PATH} {CA_CONTAINER_PATH}", f"ENV {env}"]


def rewrite_dockerfile(text: str, settings: Settings, ca: bool) -> tuple[str, list[str]]:
    """Map FROM images through the aliases and add the CA lines after each FROM.

    Returns the new text and the list of base images it now starts from. ARG defaults declared
    before the first FROM are substituted into FROM lines, as Docker does.
    """
    out: list[str] = []
    bases: list[str] = []
    stages: set[str] = set()
    global_args: dict[str, str] = {}
    seen_from = False
    lines = _join_continuations(text)
    for line in lines:
        m_arg = _ARG_RE.match(line)
        if m_arg and not seen_from:
            global_args[m_arg.group("name")] = m_arg.group("value") or ""
        m = _FROM_RE.match(line)
        if not m:
            out.append(line)
            continue
        seen_from = True
        image = _VAR_RE.sub(
            lambda v: global_args.get(v.group("a") or v.group("b"), ""), m.group("image")
        )
        if image.lower() in stages or image == "scratch":
            new_image = image
        else:
            new_image = settings.resolve_image(image)
            bases.append(new_image)
        if m.group("stage"):
            stages.add(m.group("stage").lower())
        flags = m.group("flags")
        if new_image != image:
            # The alias is a local image of the host's platform.
            flags = re.sub(r"--platform=\S+\s+", "", flags)
        out.append(f"{m.group('lead')}{flags}{new_image}{m.group('rest')}")
        if ca:
            out += _ca_instructions()
    return "\n".join(out) + "\n", bases


def _join_continuations(text: str) -> list[str]:
    """Lines with backslash continuations kept together (FROM/ARG never span lines in practice,
    but a RUN that does must not be split by the rewrite)."""
    lines: list[str] = []
    buf = ""
    for raw in text.splitlines():
        if buf:
            buf += "\n" + raw
        else:
            buf = raw
        if raw.rstrip().endswith("\\") and not raw.lstrip().startswith("#"):
            continue
        lines.append(buf)
        buf = ""
    if buf:
        lines.append(buf)
    return lines


# -- .dockerignore ------------------------------------------------------------------------------


def _pattern_to_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            parts.append(".*")
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                i += 1
                parts[-1] = "(?:.*/)?"
            continue
        if c == "*":
            parts.append("[^/]*")
        elif c == "?":
            parts.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i)
            if j == -1:
                parts.append(re.escape(c))
            else:
                parts.append(fnmatch.translate(pattern[i : j + 1])[4:-3])
                i = j
        else:
            parts.append(re.escape(c))
        i += 1
    # A pattern matches the path itself or anything below it.
    return re.compile("^" + "".join(parts) + "(?:/.*)?$")


def load_dockerignore(context: Path) -> list[tuple[bool, re.Pattern[str]]]:
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    rules = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:].strip()
        line = os.path.normpath(line.lstrip("/")).replace(os.sep, "/")
        if line == ".":
            continue
        rules.append((negate, _pattern_to_regex(line)))
    return rules


def is_ignored(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    ignored = False
    for negate, rx in rules:
        if rx.match(rel):
            ignored = not negate
    return ignored


# -- the context itself ---------------------------------------------------------------------------


@dataclass
class BuildContext:
    tar: bytes
    digest: str
    dockerfile: str
    base_images: list[str]

    @property
    def tag(self) -> str:
        return f"{IMAGE_REPOSITORY}:{self.digest[:20]}"


def _tarinfo(name: str, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = 0  # stable bytes, so the engine's cache keys stay stable too
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


@functools.lru_cache(maxsize=64)
def ca_layer_context(image: str, ca: bytes) -> BuildContext:
    """The context of `image` plus the CA bundle and its environment (one layer): what a
    prebuilt image runs as when an extra CA is configured, built once per image and bundle
    instead of copying the bundle into every container (an archive upload costs the engine
    ~55 ms of CPU per container). Cached: every trial of a job asks for it."""
    dockerfile = "\n".join([f"FROM {image}", *_ca_instructions()]) + "\n"
    h = hashlib.sha256()
    h.update(f"ttgen-ca-layer/{RECIPE_VERSION}\0".encode())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile.encode("utf-8")), (CA_CONTEXT_PATH, ca)):
            h.update(f"{name}\0{len(data)}\0".encode())
            h.update(data)
            tar.addfile(_tarinfo(name, len(data), 0o644), io.BytesIO(data))
    return BuildContext(
        tar=buf.getvalue(), digest=h.hexdigest(), dockerfile=dockerfile, base_images=[image]
    )


def make_build_context(environment_dir: Path, settings: Settings) -> BuildContext:
    """Assemble the build context of one environment folder and hash it."""
    dockerfile_path = environment_dir / "Dockerfile"
    original = dockerfile_path.read_text(encoding="utf-8")
    ca = ca_bundle_bytes(settings.extra_ca_cert) if settings.extra_ca_cert else None
    dockerfile, bases = rewrite_dockerfile(original, settings, ca is not None)
    rules = load_dockerignore(environment_dir)

    files: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(environment_dir):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, environment_dir)
        for fname in sorted(filenames) + [
            d for d in dirnames if os.path.islink(os.path.join(dirpath, d))
        ]:
            rel = fname if rel_dir == "." else f"{rel_dir}/{fname}"
            if rel == "Dockerfile" or (rules and is_ignored(rel, rules)):
                continue
            files.append((rel, Path(dirpath, fname)))

    h = hashlib.sha256()
    h.update(f"ttgen-context/{RECIPE_VERSION}\0".encode())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add(name: str, data: bytes, mode: int) -> None:
            h.update(f"{name}\0{mode & 0o111:o}\0{len(data)}\0".encode())
            h.update(data)
            tar.addfile(_tarinfo(name, len(data), mode), io.BytesIO(data))

        add("Dockerfile", dockerfile.encode("utf-8"), 0o644)
        if ca is not None:
            add(CA_CONTEXT_PATH, ca, 0o644)
        for rel, path in files:
            if path.is_symlink():
                target = os.readlink(path)
                info = _tarinfo(rel, 0, 0o777)
                info.type = tarfile.SYMTYPE
                info.linkname = target
                h.update(f"{rel}\0->{target}\0".encode())
                tar.addfile(info)
                continue
            st = path.stat()
            add(rel, path.read_bytes(), st.st_mode & 0o7777)
    return BuildContext(
        tar=buf.getvalue(), digest=h.hexdigest(), dockerfile=dockerfile, base_images=bases
    )
