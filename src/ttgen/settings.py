"""ttgen's own settings: image aliases, an extra CA bundle and sandbox defaults.

Sources, later ones win:

1. built-in defaults;
2. the user file ``~/.config/ttgen/config.toml`` (or ``$XDG_CONFIG_HOME/ttgen/config.toml``);
3. ``ttgen.toml`` in the current directory (a project's settings, e.g. this repository's);
4. the file named by ``TTGEN_CONFIG``;
5. environment variables: ``TTGEN_IMAGE_ALIASES`` (``PATTERN=IMAGE,PATTERN=IMAGE``),
   ``TTGEN_EXTRA_CA_CERT`` (a PEM file), ``TTGEN_PIDS_LIMIT``, ``TTGEN_DOMAIN_BASE``,
   ``TTGEN_BACKEND`` (the sandbox backend: ``docker`` or ``podman``), ``TTGEN_START_CONCURRENCY``,
   ``TTGEN_ENGINE_CALL_TIMEOUT``.

Alias lists are merged: entries from a later source are tried before earlier ones.
A config file looks like::

    backend = "docker"     # the sandbox backend: "docker" (default) or "podman"; top-level
                           # keys go before the first [table] (or: [sandbox] backend = ...)

    [images]
    aliases = { "ubuntu:*" = "ttgen/base:bookworm", "python:3.*" = "ttgen/base:bookworm" }
    extra_ca_cert = "host"   # a PEM file, or "host": the host's own trust store
    pull = true            # try `docker pull` for images missing locally
    domain_base = "ubuntu:24.04"   # base of the ttgen/domain:* images (default: their Dockerfile's)

    [sandbox]
    pids_limit = 4096
    default_cpus = 1       # for tasks that set no cpus
    default_memory_mb = 2048
    start_concurrency = 8  # container starts (and removals) the engine is asked for at once;
                           # default 16 per CPU, at most 32: enough to keep the engine busy
                           # (a start waits on more than CPU), few enough that no call hangs
    engine_call_timeout = 300  # seconds a container create/start/removal or a network call may
                               # take before the engine counts as stuck (a job then stops; run
                               # it again, once the engine is restarted, to resume)
    agent_pacing = true    # while more containers are starting than 4 x the slots above, the
                           # agents of trials already up wait, then go spread over the model's
                           # latency just before the last start (ttgen.rollout.pacing)
"""

from __future__ import annotations

import fnmatch
import os
import re
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ttgen.errors import ConfigError

ENV_ALIASES = "TTGEN_IMAGE_ALIASES"
ENV_CA = "TTGEN_EXTRA_CA_CERT"
ENV_CONFIG = "TTGEN_CONFIG"
ENV_PIDS = "TTGEN_PIDS_LIMIT"
ENV_DOMAIN_BASE = "TTGEN_DOMAIN_BASE"
ENV_BACKEND = "TTGEN_BACKEND"
ENV_START = "TTGEN_START_CONCURRENCY"
ENV_CALL_TIMEOUT = "TTGEN_ENGINE_CALL_TIMEOUT"
ENV_PACING = "TTGEN_AGENT_PACING"
DEFAULT_BACKEND = "docker"
_FLAGS = {"1": True, "true": True, "on": True, "yes": True,
          "0": False, "false": False, "off": False, "no": False}  # fmt: skip
_BACKEND_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class ImageAlias:
    pattern: str
    image: str
    source: str = ""


@dataclass
class Settings:
    aliases: list[ImageAlias] = field(default_factory=list)
    extra_ca_cert: Path | None = None
    pull: bool = True
    pids_limit: int = 4096
    default_cpus: float = 1.0
    default_memory_mb: int = 2048
    start_concurrency: int | None = None  # None: 16 per CPU, at most 32 (see the docstring)
    engine_call_timeout: float = 300.0  # s; past it the engine counts as stuck (docstring)
    agent_pacing: bool = True  # hold early agents back during a start burst (docstring)
    domain_base: str | None = None  # base image of the domain images (None: the Dockerfile's)
    backend: str = DEFAULT_BACKEND  # the sandbox backend (ttgen.sandbox.open_backend's name)
    sources: list[str] = field(default_factory=list)

    @property
    def engine_slots(self) -> int:
        """How many container starts (and, separately, removals) run at once."""
        if self.start_concurrency is not None:
            return self.start_concurrency
        return max(1, min(32, 16 * (os.cpu_count() or 1)))

    def resolve_image(self, ref: str) -> str:
        """Map an image reference through the aliases (first match wins); unchanged if none."""
        for candidate in _ref_forms(ref):
            for alias in self.aliases:
                if fnmatch.fnmatchcase(candidate, alias.pattern):
                    return alias.image
        return ref


def _ref_forms(ref: str) -> list[str]:
    """`ref` as written and in short form (no docker.io/library/ prefix, explicit tag)."""
    short = ref
    for prefix in ("docker.io/", "index.docker.io/"):
        short = short.removeprefix(prefix)
    short = short.removeprefix("library/")
    if ":" not in short.rsplit("/", 1)[-1] and "@" not in short:
        short += ":latest"
    return [ref] if short == ref else [ref, short]


def parse_alias_list(text: str, source: str) -> list[ImageAlias]:
    """Parse ``PATTERN=IMAGE,PATTERN=IMAGE`` (commas or newlines between entries)."""
    out = []
    for raw in text.replace("\n", ",").split(","):
        item = raw.strip()
        if not item:
            continue
        if "=" not in item:
            raise ConfigError(f"{source}: image alias {item!r} is not of the form PATTERN=IMAGE")
        pattern, image = (s.strip() for s in item.split("=", 1))
        if not pattern or not image:
            raise ConfigError(f"{source}: image alias {item!r} has an empty side")
        out.append(ImageAlias(pattern, image, source))
    return out


def _apply_file(settings: Settings, path: Path) -> None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    images: dict[str, Any] = data.get("images", {})
    sandbox: dict[str, Any] = data.get("sandbox", {})
    src = str(path)
    aliases = images.get("aliases")
    if aliases is not None:
        if isinstance(aliases, dict):
            new = [ImageAlias(str(k), str(v), src) for k, v in aliases.items()]
        elif isinstance(aliases, list):
            new = parse_alias_list(",".join(map(str, aliases)), src)
        else:
            raise ConfigError(
                f"{path}: [images] aliases must be a table or a list of 'PATTERN=IMAGE'"
            )
        settings.aliases = new + settings.aliases
    if "extra_ca_cert" in images:
        settings.extra_ca_cert = _ca_path(str(images["extra_ca_cert"]), path.parent, src)
    if "pull" in images:
        settings.pull = bool(images["pull"])
    if "domain_base" in images:
        settings.domain_base = _image_setting(
            images["domain_base"], f"{path}: [images] domain_base"
        )
    for table, where in ((data, "backend"), (sandbox, "[sandbox] backend")):
        if "backend" in table:
            settings.backend = _backend_setting(table["backend"], f"{path}: {where}")
    for key, conv in (
        ("pids_limit", int),
        ("default_cpus", float),
        ("default_memory_mb", int),
        ("start_concurrency", int),
        ("engine_call_timeout", float),
    ):
        if key in sandbox:
            try:
                setattr(settings, key, conv(sandbox[key]))
            except (TypeError, ValueError):
                raise ConfigError(f"{path}: [sandbox] {key} must be a number") from None
    if settings.start_concurrency is not None and settings.start_concurrency < 1:
        raise ConfigError(f"{path}: [sandbox] start_concurrency must be at least 1")
    if "agent_pacing" in sandbox:
        if not isinstance(sandbox["agent_pacing"], bool):
            raise ConfigError(f"{path}: [sandbox] agent_pacing must be true or false")
        settings.agent_pacing = sandbox["agent_pacing"]
    if settings.engine_call_timeout <= 0:
        raise ConfigError(f"{path}: [sandbox] engine_call_timeout must be more than 0 seconds")
    settings.sources.append(src)


def _image_setting(value: object, source: str) -> str | None:
    """An image reference setting; "" means unset."""
    text = str(value).strip()
    if not text:
        return None
    if any(c.isspace() for c in text):
        raise ConfigError(f"{source}: {text!r} is not an image reference")
    return text


def _backend_setting(value: object, source: str) -> str:
    """A backend name (checked against the registry when a backend is opened)."""
    text = str(value).strip().lower()
    if not _BACKEND_NAME.match(text):
        raise ConfigError(f"{source}: {value!r} is not a backend name (docker or podman)")
    return text


def host_ca_bundle() -> Path | None:
    """The host's default trust store (which holds a corporate CA where the admin installed one)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (
        paths.cafile,
        paths.openssl_cafile,
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ):
        if candidate and os.path.isfile(candidate):
            return Path(candidate)
    return None


def _ca_path(value: str, base: Path, source: str) -> Path | None:
    """A CA setting: a PEM path, "host" (the host's trust store) or "" / "none" (off)."""
    if value.strip().lower() in ("", "none", "off"):
        return None
    if value.strip().lower() == "host":
        found = host_ca_bundle()
        if found is None:
            raise ConfigError(f"{source}: extra_ca_cert = 'host' but this host has no CA bundle")
        return found
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else (base / p).resolve()


def load_settings(cwd: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    settings = Settings()
    cwd = cwd or Path.cwd()
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    candidates = [Path(xdg) / "ttgen" / "config.toml", cwd / "ttgen.toml"]
    if env.get(ENV_CONFIG):
        explicit = Path(env[ENV_CONFIG])
        if not explicit.is_file():
            raise ConfigError(f"{ENV_CONFIG}={explicit}: no such file")
        candidates.append(explicit)
    seen: set[Path] = set()
    for c in candidates:
        if c.is_file() and c.resolve() not in seen:
            seen.add(c.resolve())
            _apply_file(settings, c)
    if env.get(ENV_ALIASES):
        settings.aliases = parse_alias_list(env[ENV_ALIASES], ENV_ALIASES) + settings.aliases
        settings.sources.append(ENV_ALIASES)
    if env.get(ENV_CA):
        settings.extra_ca_cert = _ca_path(env[ENV_CA], cwd, ENV_CA)
        settings.sources.append(ENV_CA)
    if env.get(ENV_PIDS):
        try:
            settings.pids_limit = int(env[ENV_PIDS])
        except ValueError:
            raise ConfigError(f"{ENV_PIDS}={env[ENV_PIDS]!r} is not an integer") from None
    if env.get(ENV_START):
        try:
            settings.start_concurrency = int(env[ENV_START])
        except ValueError:
            raise ConfigError(f"{ENV_START}={env[ENV_START]!r} is not an integer") from None
        if settings.start_concurrency < 1:
            raise ConfigError(f"{ENV_START}={env[ENV_START]!r}: must be at least 1")
    if env.get(ENV_CALL_TIMEOUT):
        try:
            settings.engine_call_timeout = float(env[ENV_CALL_TIMEOUT])
        except ValueError:
            raise ConfigError(
                f"{ENV_CALL_TIMEOUT}={env[ENV_CALL_TIMEOUT]!r} is not a number of seconds"
            ) from None
        if settings.engine_call_timeout <= 0:
            raise ConfigError(f"{ENV_CALL_TIMEOUT}={env[ENV_CALL_TIMEOUT]!r}: must be more than 0")
    if env.get(ENV_PACING):
        flag = env[ENV_PACING].strip().lower()
        if flag not in _FLAGS:
            raise ConfigError(f"{ENV_PACING}={env[ENV_PACING]!r}: use 1 or 0 (true/false, on/off)")
        settings.agent_pacing = _FLAGS[flag]
    if env.get(ENV_DOMAIN_BASE):
        settings.domain_base = _image_setting(env[ENV_DOMAIN_BASE], ENV_DOMAIN_BASE)
        settings.sources.append(ENV_DOMAIN_BASE)
    if env.get(ENV_BACKEND):
        settings.backend = _backend_setting(env[ENV_BACKEND], ENV_BACKEND)
        settings.sources.append(ENV_BACKEND)
    if settings.extra_ca_cert is not None and not settings.extra_ca_cert.is_file():
        raise ConfigError(f"extra CA certificate {settings.extra_ca_cert} does not exist")
    return settings
