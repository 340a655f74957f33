"""The skill taxonomy of skill-based generation (paper §4.2.2, Table 10, Figures 12-20).

Each task domain is one YAML file in the ``taxonomy/`` folder beside this module (package data).
A file names the domain, its skill types (Table 10's, verbatim, for the nine domains the table
lists), the *domain module* that goes into the generator's system prompt (role, "Domain Focus",
"Your Task"), and the domain's *primitive skills*: concrete terminal/programming operations a
task is built around. The paper never published its primitive lists; ours are written by hand.

Skill-based generation draws 3 to 5 primitives per task (:func:`sample_primitives`). The draw is
seeded by ``(seed, domain, task index)`` alone, so task *i* gets the same primitives whatever the
number of tasks asked for and after a resume.

Users can add domains or replace a packaged one with their own YAML files
(``load_taxonomy(extra=[...])``); those are validated the same way, except that they may have as
few as :data:`MIN_PRIMITIVES_USER` primitives and need not cover every skill type twice.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ttgen.errors import ConfigError
from ttgen.sandbox.domains import DOMAIN_IMAGES

#: The packaged domains, in the order they are listed and resolved by ``"all"``: every domain
#: image except the general one.
DOMAIN_ORDER: tuple[str, ...] = tuple(d for d in DOMAIN_IMAGES if d != "general")

#: The folder of packaged domain files.
TAXONOMY_DIR = Path(__file__).with_name("taxonomy")
#: Packaged domains need this many primitives, and every skill type at least
#: MIN_PER_TYPE_PACKAGED of them; user files need only MIN_PRIMITIVES_USER in all.
MIN_PRIMITIVES_PACKAGED = 25
MIN_PER_TYPE_PACKAGED = 2
MIN_PRIMITIVES_USER = 3
#: The Docker image a domain's tasks run in.
IMAGE_PREFIX = "ttgen/domain:"

_YAML_SUFFIXES = (".yaml", ".yml")
_DOMAIN_ID = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
_PRIMITIVE_ID = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)+$")
_TOP_KEYS = ("id", "title", "in_table10", "skill_types", "example_skill", "module", "primitives")
_MODULE_KEYS = ("role", "focus", "task")
_PRIMITIVE_KEYS = ("id", "type", "skill")


@dataclass(frozen=True)
class Primitive:
    """One primitive skill: a concrete operation a generated task is built around."""

    id: str
    type: str
    skill: str
    domain: str


@dataclass(frozen=True)
class Domain:
    """A task domain: its skill types, generation-prompt module and primitive skills."""

    id: str
    title: str
    in_table10: bool
    skill_types: tuple[str, ...]
    example_skill: str
    role: str
    focus: tuple[str, ...]
    task: str
    primitives: tuple[Primitive, ...]
    source: str

    @property
    def image(self) -> str:
        """The pre-built Docker image this domain's tasks run in."""
        return f"{IMAGE_PREFIX}{self.id}"

    def module_text(self) -> str:
        """The domain module as inserted into the generation system prompt (markdown)."""
        focus = "\n".join(f"- {item}" for item in self.focus)
        return (
            f"## Domain: {self.title}\n\n{self.role}\n\n"
            f"### Domain Focus\n{focus}\n\n### Your Task\n{self.task}"
        )

    def primitives_of_type(self, skill_type: str) -> tuple[Primitive, ...]:
        """The domain's primitives of one skill type, in file order."""
        return tuple(p for p in self.primitives if p.type == skill_type)


def _key(name: str) -> str:
    """Normalise a domain name for lookups: case, hyphens and spaces do not matter."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


class Taxonomy:
    """The loaded domains, keyed by id, in :data:`DOMAIN_ORDER` (user-added domains after)."""

    def __init__(self, domains: Iterable[Domain]) -> None:
        by_id = {d.id: d for d in domains}
        order = [i for i in DOMAIN_ORDER if i in by_id]
        order += [i for i in by_id if i not in DOMAIN_ORDER]
        # Read-only: the default taxonomy is cached and shared by every caller.
        self.domains: Mapping[str, Domain] = MappingProxyType({i: by_id[i] for i in order})
        self._aliases: dict[str, str] = {}
        for d in self.domains.values():
            self._aliases[_key(d.title)] = d.id
        for d in self.domains.values():  # an id wins over another domain's title
            self._aliases[d.id] = d.id

    def __iter__(self) -> Iterator[Domain]:
        return iter(self.domains.values())

    def __len__(self) -> int:
        return len(self.domains)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _key(name) in self._aliases

    def get(self, name: str) -> Domain:
        """The domain named by its id or title, in any case, with ``_``, ``-`` or spaces."""
        domain_id = self._aliases.get(_key(name))
        if domain_id is None:
            raise ConfigError(
                f"unknown task domain {name!r}; known domains: {', '.join(self.domains)}"
            )
        return self.domains[domain_id]

    def resolve(self, spec: str) -> list[Domain]:
        """``"all"`` or a comma-separated list of domain names → domains (duplicates dropped)."""
        names = [part.strip() for part in spec.split(",") if part.strip()]
        if not names:
            raise ConfigError(
                f"no task domain given in {spec!r}; use 'all' or some of: {', '.join(self.domains)}"
            )
        if any(n.lower() == "all" for n in names):
            if len(names) > 1:
                raise ConfigError(f"'all' cannot be combined with other domains in {spec!r}")
            return list(self.domains.values())
        picked: list[Domain] = []
        for name in names:
            domain = self.get(name)
            if domain not in picked:
                picked.append(domain)
        return picked


# -- loading ----------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects a mapping key given twice (PyYAML keeps the last)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)


class _Checker:
    """Validates one domain file; every error names the file and the key path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {problem}")

    def mapping(self, value: Any, key: str, keys: Sequence[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        for k in keys:
            if k not in value:
                raise self.fail(f"{key}.{k}" if key != "(top level)" else k, "missing")
        unknown = [str(k) for k in value if k not in keys]
        if unknown:
            where = "" if key == "(top level)" else f"{key}."
            raise self.fail(
                f"{where}{unknown[0]}", f"unknown key (expected only: {', '.join(keys)})"
            )
        return value

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {type(value).__name__}")
        value = value.strip()
        if not value:
            raise self.fail(key, "must not be empty")
        return value

    def texts(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list of strings, got {type(value).__name__}")
        if not value:
            raise self.fail(key, "must not be empty")
        items = tuple(self.text(v, f"{key}[{i}]") for i, v in enumerate(value))
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item in seen:
                raise self.fail(f"{key}[{i}]", f"{item!r} is listed twice")
            seen.add(item)
        return items


def load_domain_file(path: Path | str, *, packaged: bool = False) -> Domain:
    """Read and validate one domain file; raises :class:`ConfigError` naming the file and key.

    ``packaged`` applies the stricter rules of the files shipped with ttgen: the id equals the
    file name, at least :data:`MIN_PRIMITIVES_PACKAGED` primitives, and every skill type covered
    by at least :data:`MIN_PER_TYPE_PACKAGED` of them.
    """
    path = Path(path)
    check = _Checker(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the taxonomy file: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if raw is None:
        raise ConfigError(f"{path}: the taxonomy file is empty")
    data = check.mapping(raw, "(top level)", _TOP_KEYS)

    domain_id = check.text(data["id"], "id")
    if not _DOMAIN_ID.match(domain_id):
        raise check.fail("id", f"{domain_id!r} is not a snake_case identifier (e.g. data_science)")
    if packaged and domain_id != path.stem:
        raise check.fail("id", f"{domain_id!r} differs from the file name {path.name!r}")
    title = check.text(data["title"], "title")
    if not isinstance(data["in_table10"], bool):
        raise check.fail("in_table10", f"expected true or false, got {data['in_table10']!r}")
    skill_types = check.texts(data["skill_types"], "skill_types")
    example_skill = check.text(data["example_skill"], "example_skill")

    module = check.mapping(data["module"], "module", _MODULE_KEYS)
    role = check.text(module["role"], "module.role")
    focus = check.texts(module["focus"], "module.focus")
    task = check.text(module["task"], "module.task")

    items = data["primitives"]
    if not isinstance(items, list):
        raise check.fail("primitives", f"expected a list, got {type(items).__name__}")
    minimum = MIN_PRIMITIVES_PACKAGED if packaged else MIN_PRIMITIVES_USER
    if len(items) < minimum:
        raise check.fail("primitives", f"has {len(items)} primitives; at least {minimum} needed")
    primitives: list[Primitive] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        key = f"primitives[{i}]"
        entry = check.mapping(item, key, _PRIMITIVE_KEYS)
        pid = check.text(entry["id"], f"{key}.id")
        if not _PRIMITIVE_ID.match(pid):
            raise check.fail(
                f"{key}.id", f"{pid!r} is not kebab-case with a domain prefix (e.g. ds-pca)"
            )
        if pid in seen:
            raise check.fail(
                f"{key}.id", f"duplicate primitive id {pid!r} (see primitives[{seen[pid]}])"
            )
        seen[pid] = i
        ptype = check.text(entry["type"], f"{key}.type")
        if ptype not in skill_types:
            raise check.fail(
                f"{key}.type",
                f"{ptype!r} is not one of the domain's skill_types ({', '.join(skill_types)})",
            )
        skill = check.text(entry["skill"], f"{key}.skill")
        primitives.append(Primitive(id=pid, type=ptype, skill=skill, domain=domain_id))

    if packaged:
        for skill_type in skill_types:
            n = sum(p.type == skill_type for p in primitives)
            if n < MIN_PER_TYPE_PACKAGED:
                raise check.fail(
                    "primitives",
                    f"skill type {skill_type!r} has {n} primitives; "
                    f"at least {MIN_PER_TYPE_PACKAGED} needed",
                )

    return Domain(
        id=domain_id,
        title=title,
        in_table10=data["in_table10"],
        skill_types=skill_types,
        example_skill=example_skill,
        role=role,
        focus=focus,
        task=task,
        primitives=tuple(primitives),
        source=str(path),
    )


def _yaml_files(path: Path) -> list[Path]:
    """The YAML files a user path names: the file itself, or a folder's *.yaml/*.yml files."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _YAML_SUFFIXES)
        if not files:
            raise ConfigError(f"{path}: no taxonomy files (*.yaml, *.yml) in this folder")
        return files
    if path.is_file():
        return [path]
    raise ConfigError(f"{path}: taxonomy file or folder not found")


@functools.cache
def _packaged_domains() -> tuple[Domain, ...]:
    files = sorted(p for p in TAXONOMY_DIR.iterdir() if p.suffix in _YAML_SUFFIXES)
    domains = [load_domain_file(p, packaged=True) for p in files]
    missing = set(DOMAIN_ORDER) - {d.id for d in domains}
    if missing:
        raise ConfigError(
            f"{TAXONOMY_DIR}: packaged taxonomy lacks domains {', '.join(sorted(missing))}"
        )
    return tuple(domains)


def _check_unique_primitives(domains: Iterable[Domain]) -> None:
    owner: dict[str, Domain] = {}
    for domain in domains:
        for p in domain.primitives:
            other = owner.setdefault(p.id, domain)
            if other is not domain:
                raise ConfigError(
                    f"{domain.source}: primitives: id {p.id!r} is also used by domain "
                    f"{other.id!r} ({other.source}); primitive ids must be unique across domains"
                )


@functools.cache
def _default_taxonomy() -> Taxonomy:
    domains = _packaged_domains()
    _check_unique_primitives(domains)
    return Taxonomy(domains)


def load_taxonomy(extra: Sequence[Path | str] = ()) -> Taxonomy:
    """The packaged taxonomy, plus user YAML files or folders that add or replace domains.

    A user domain whose id equals a packaged one replaces it; two user files may not define the
    same domain. Primitive ids must stay unique across the resulting taxonomy. The call without
    ``extra`` is cached.
    """
    if not extra:
        return _default_taxonomy()
    domains = {d.id: d for d in _packaged_domains()}
    user_sources: dict[str, str] = {}
    for entry in extra:
        for path in _yaml_files(Path(entry)):
            domain = load_domain_file(path, packaged=False)
            if domain.id in user_sources:
                raise ConfigError(
                    f"{path}: id: domain {domain.id!r} is already defined by "
                    f"{user_sources[domain.id]}"
                )
            user_sources[domain.id] = str(path)
            domains[domain.id] = domain
    _check_unique_primitives(domains.values())
    return Taxonomy(domains.values())


# -- sampling ---------------------------------------------------------------------------------


def sample_primitives(
    domain: Domain,
    *,
    seed: int,
    index: int,
    k_min: int = 3,
    k_max: int = 5,
    across_types: bool = True,
) -> list[Primitive]:
    """Draw the primitives task ``index`` of ``domain`` is built around.

    ``k`` is uniform in ``[k_min, k_max]``. With ``across_types``, ``k`` distinct skill types
    are drawn first and one primitive of each (when the domain has fewer types with primitives
    than ``k``, every type once, then the rest from the remaining primitives); otherwise ``k``
    primitives are drawn plainly. The result is in draw order. The generator is seeded by
    ``seed``, the domain id and ``index`` only, so a task's draw does not depend on how many
    tasks are generated or in which order.
    """
    n = len(domain.primitives)
    for name, value in (("k_min", k_min), ("k_max", k_max)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    if not 1 <= k_min <= k_max <= n:
        raise ConfigError(
            f"invalid primitive count range k_min={k_min}, k_max={k_max} for domain "
            f"{domain.id!r}: need 1 <= k_min <= k_max <= {n} (its number of primitives)"
        )
    rng = random.Random(f"{seed}:{domain.id}:{index}")
    k = rng.randint(k_min, k_max)
    if not across_types:
        return rng.sample(list(domain.primitives), k)

    # Types in the file's declared order, so the draw does not depend on dict/set ordering.
    types = [t for t in domain.skill_types if any(p.type == t for p in domain.primitives)]
    chosen_types = rng.sample(types, min(k, len(types)))
    picked = [rng.choice(domain.primitives_of_type(t)) for t in chosen_types]
    if len(picked) < k:
        rest = [p for p in domain.primitives if p not in picked]
        picked += rng.sample(rest, k - len(picked))
    return picked


def describe(taxonomy: Taxonomy) -> list[dict[str, Any]]:
    """One row per domain for a CLI listing (JSON-serialisable)."""
    return [
        {
            "id": d.id,
            "title": d.title,
            "in_table10": d.in_table10,
            "n_primitives": len(d.primitives),
            "skill_types": list(d.skill_types),
            "image": d.image,
        }
        for d in taxonomy
    ]
