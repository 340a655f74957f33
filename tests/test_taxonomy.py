"""The skill taxonomy (sources/taxonomy/*.yaml) and its loader and sampler."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from ttgen.errors import ConfigError
from ttgen.sources.skills_taxonomy import (
    DOMAIN_ORDER,
    Domain,
    describe,
    load_domain_file,
    load_taxonomy,
    sample_primitives,
)

# The paper's Table 10 ("Skills Summary by Domain"), verbatim (docs: paper-spec.md §1.2.2).
TABLE_10: dict[str, tuple[tuple[str, ...], str]] = {
    "security": (
        ("Systems", "Data Processing", "Web Security", "Algorithmic", "Testing"),
        "Craft exploit payloads to bypass authentication and identify vulnerabilities",
    ),
    "software_engineering": (
        ("Algorithmic", "Systems", "Data Processing", "Web Security", "Testing", "Mathematical"),
        "Implement graph traversal (BFS/DFS) for dependency resolution",
    ),
    "file_operations": (
        (
            "File I/O",
            "Navigation",
            "Data Parsing",
            "Transformation",
            "Archives",
            "Resources",
            "Network",
        ),
        "Parse structured formats (JSON/XML/CSV) with encoding and validation",
    ),
    "data_querying": (
        ("Query Construction", "Data Comprehension", "Graph Processing", "Result Processing"),
        "Writing queries using the formal syntax of declarative query languages for structured data",
    ),
    "data_science": (
        ("Systems", "Data Processing", "Algorithmic", "Mathematical", "Testing", "Web Security"),
        "Load and transform tabular data with groupby, filtering, and aggregation",
    ),
    "debugging": (
        ("Systems", "Debugging", "Testing", "Algorithmic", "Data Processing", "Mathematical"),
        "Resolve package dependency conflicts through constraint analysis",
    ),
    "scientific_computing": (
        (
            "Data Processing",
            "Algorithmic",
            "Mathematical",
            "Systems",
            "Testing",
            "Statistical",
            "Web Security",
        ),
        "Computing distance metrics between discrete probability distributions",
    ),
    "data_processing": (
        (
            "Data I/O",
            "Manipulation",
            "String/Text",
            "Algorithmic",
            "Mathematical",
            "Time Series",
            "Systems",
            "Testing",
        ),
        "Build transformation pipelines with interpolation and feature extraction",
    ),
    "system_administration": (
        (
            "Filesystem",
            "Process/Service",
            "Network",
            "Configuration",
            "Deployment",
            "Data Processing",
            "Security",
            "Shell Scripting",
            "Testing",
            "Algorithmic",
        ),
        "Manage file permissions, configure services, and automate tasks with shell scripts",
    ),
}

# The "Domain Focus" names of the paper's domain modules (Figures 12-20), which the packaged
# focus items start with; the two domains outside Table 10 have ours.
FOCUS_NAMES: dict[str, tuple[str, ...]] = {
    "data_processing": (
        "File Format Handling",
        "Data Transformation",
        "ETL Pipelines",
        "Stream Processing",
        "Data Validation",
    ),
    "data_querying": ("SQL Operations", "Query Optimization", "NoSQL Patterns"),
    "data_science": (
        "Exploratory Analysis",
        "Feature Engineering",
        "Statistical Modeling",
        "Data Mining",
        "Reporting",
    ),
    "debugging": (
        "Error Diagnosis",
        "Root Cause Analysis",
        "Performance Debugging",
        "Memory Issues",
        "Concurrency Bugs",
    ),
    "file_operations": (
        "File I/O",
        "Directory Traversal",
        "Binary and Text Formats",
        "Compression",
        "File-System Metadata",
    ),
    "scientific_computing": (
        "Numerical Simulation",
        "Signal Processing",
        "Statistical Analysis",
        "Visualization",
        "Domain Applications",
    ),
    "security": (
        "Cryptography",
        "Vulnerability Analysis",
        "Authentication",
        "Network Security",
        "Secure Coding",
    ),
    "software_engineering": (
        "Code Quality",
        "Build Systems",
        "Version Control",
        "API Design",
        "Architecture",
    ),
    "system_administration": (
        "Process Management",
        "Network Configuration",
        "Storage Management",
        "Monitoring",
        "Automation",
    ),
}

TAXONOMY = load_taxonomy()
DOMAINS = list(TAXONOMY)


def _sentences(text: str) -> int:
    return len(re.findall(r"[.!?](?:\s|$)", text))


# -- the packaged data ------------------------------------------------------------------------


def test_packaged_domains_are_the_eleven_in_order() -> None:
    assert tuple(TAXONOMY.domains) == DOMAIN_ORDER
    assert len(DOMAIN_ORDER) == 11
    assert len(TAXONOMY) == 11
    assert load_taxonomy() is TAXONOMY  # the default call is cached


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.id)
def test_packaged_domain_is_complete(domain: Domain) -> None:
    assert Path(domain.source).name == f"{domain.id}.yaml"
    assert domain.image == f"ttgen/domain:{domain.id}"
    assert len(domain.primitives) >= 25
    counts = Counter(p.type for p in domain.primitives)
    assert set(counts) <= set(domain.skill_types)
    for skill_type in domain.skill_types:
        assert counts[skill_type] >= 2, f"{domain.id}: {skill_type} has {counts[skill_type]}"
    # One id prefix per domain, and no two primitives with the same skill text.
    prefixes = {p.id.split("-", 1)[0] for p in domain.primitives}
    assert len(prefixes) == 1, prefixes
    skills = [p.skill for p in domain.primitives]
    assert len(set(skills)) == len(skills)
    for p in domain.primitives:
        assert p.domain == domain.id
        assert len(p.skill.split()) >= 8, f"{p.id} is too vague: {p.skill!r}"
        assert not p.skill.endswith("."), p.id


def test_primitive_ids_are_unique_across_domains() -> None:
    ids = [p.id for d in DOMAINS for p in d.primitives]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("domain_id", sorted(TABLE_10))
def test_table10_domains_are_verbatim(domain_id: str) -> None:
    domain = TAXONOMY.get(domain_id)
    skill_types, example = TABLE_10[domain_id]
    assert domain.in_table10 is True
    assert domain.skill_types == skill_types
    assert domain.example_skill == example


def test_domains_outside_table10_are_marked() -> None:
    outside = [d.id for d in DOMAINS if not d.in_table10]
    assert outside == ["dependency_management", "model_training"]
    assert set(TABLE_10) | set(outside) == set(DOMAIN_ORDER)


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.id)
def test_domain_module(domain: Domain) -> None:
    assert f"{domain.title} Task Builder" in domain.role
    assert 2 <= _sentences(domain.role) <= 4
    assert 5 <= len(domain.focus) <= 8
    names = []
    for item in domain.focus:
        name, _, sentence = item.partition(": ")
        assert name and sentence.endswith("."), item
        names.append(name)
    for expected in FOCUS_NAMES.get(domain.id, ()):
        assert expected in names, f"{domain.id}: focus lacks {expected!r}"
    assert "/app" in domain.task
    assert "\n\n" not in domain.task  # one paragraph

    text = domain.module_text()
    assert text.startswith(f"## Domain: {domain.title}\n\n{domain.role}\n\n### Domain Focus\n")
    for item in domain.focus:
        assert f"\n- {item}\n" in text
    assert text.endswith(f"\n\n### Your Task\n{domain.task}")


def test_describe_rows() -> None:
    rows = describe(TAXONOMY)
    assert [r["id"] for r in rows] == list(DOMAIN_ORDER)
    by_id = {r["id"]: r for r in rows}
    ds = by_id["data_science"]
    assert ds["title"] == "Data Science"
    assert ds["n_primitives"] == len(TAXONOMY.get("data_science").primitives)
    assert ds["skill_types"] == list(TABLE_10["data_science"][0])
    assert ds["image"] == "ttgen/domain:data_science"
    assert by_id["model_training"]["in_table10"] is False
    json.dumps(rows)  # a CLI prints them as JSON


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "data_science",
        "Data Science",
        "data-science",
        "DATA SCIENCE",
        "  data science ",
        "Data-Science",
    ],
)
def test_get_accepts_ids_titles_and_separators(name: str) -> None:
    assert TAXONOMY.get(name).id == "data_science"
    assert name in TAXONOMY


def test_get_unknown_lists_known_ids() -> None:
    with pytest.raises(ConfigError) as err:
        TAXONOMY.get("datamining")
    message = str(err.value)
    assert "'datamining'" in message
    for domain_id in DOMAIN_ORDER:
        assert domain_id in message
    assert "datamining" not in TAXONOMY


def test_resolve() -> None:
    assert TAXONOMY.resolve("all") == DOMAINS
    assert TAXONOMY.resolve(" ALL ") == DOMAINS
    picked = TAXONOMY.resolve("security, data-science,Security,")
    assert [d.id for d in picked] == ["security", "data_science"]
    for bad in ("", " , ", "all,security", "security,nope"):
        with pytest.raises(ConfigError):
            TAXONOMY.resolve(bad)


# -- sampling ---------------------------------------------------------------------------------


def _ids(primitives: list[Any]) -> list[str]:
    return [p.id for p in primitives]


def test_sampling_is_reproducible_and_independent_per_task() -> None:
    domain = TAXONOMY.get("data_science")
    first = [_ids(sample_primitives(domain, seed=7, index=i)) for i in range(60)]
    # Same seed and index: the same list, whatever order or subset of tasks is drawn.
    again = {i: _ids(sample_primitives(domain, seed=7, index=i)) for i in reversed(range(60))}
    assert first == [again[i] for i in range(60)]
    # Different tasks (and seeds, and domains) usually get different primitives.
    assert len({tuple(x) for x in first}) >= 55
    other_seed = [_ids(sample_primitives(domain, seed=8, index=i)) for i in range(60)]
    assert sum(a != b for a, b in zip(first, other_seed, strict=True)) >= 55


def test_sampling_is_stable_across_processes() -> None:
    # Resuming a run in a new interpreter (another hash seed) must redraw the same primitives.
    code = (
        "import json; from ttgen.sources.skills_taxonomy import load_taxonomy, sample_primitives;"
        "d = load_taxonomy().get('security');"
        "print(json.dumps([[p.id for p in sample_primitives(d, seed=3, index=i)] for i in range(5)]))"
    )
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        )
        outputs.append(json.loads(result.stdout))
    domain = TAXONOMY.get("security")
    here = [_ids(sample_primitives(domain, seed=3, index=i)) for i in range(5)]
    assert outputs[0] == outputs[1] == here


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.id)
def test_sampling_k_range_and_distinct_types(domain: Domain) -> None:
    sizes = Counter()
    for i in range(120):
        picked = sample_primitives(domain, seed=1, index=i)
        sizes[len(picked)] += 1
        assert 3 <= len(picked) <= 5
        assert len(set(_ids(picked))) == len(picked)
        types = {p.type for p in picked}
        assert len(types) == min(len(picked), len(domain.skill_types))
        assert all(p.domain == domain.id for p in picked)
    assert set(sizes) == {3, 4, 5}


def test_sampling_with_more_primitives_than_types() -> None:
    domain = TAXONOMY.get("data_querying")  # 4 skill types
    assert len(domain.skill_types) == 4
    for i in range(40):
        picked = sample_primitives(domain, seed=2, index=i, k_min=6, k_max=6)
        assert len(picked) == 6
        assert len(set(_ids(picked))) == 6
        # Every type first, once each, then the rest from any type.
        assert {p.type for p in picked[:4]} == set(domain.skill_types)


def test_sampling_without_types() -> None:
    domain = TAXONOMY.get("debugging")
    seen_repeat = False
    for i in range(80):
        picked = sample_primitives(domain, seed=5, index=i, k_min=4, k_max=4, across_types=False)
        assert len(picked) == 4
        assert len(set(_ids(picked))) == 4
        seen_repeat |= len({p.type for p in picked}) < 4
    assert seen_repeat  # a plain sample does not force distinct types
    everything = sample_primitives(
        domain, seed=5, index=0, k_min=len(domain.primitives), k_max=len(domain.primitives)
    )
    assert sorted(_ids(everything)) == sorted(p.id for p in domain.primitives)


@pytest.mark.parametrize(
    ("k_min", "k_max"),
    [(0, 3), (4, 3), (3, 1000), (-1, 2), (2.5, 4), (True, 3)],
)
def test_sampling_rejects_bad_k(k_min: Any, k_max: Any) -> None:
    with pytest.raises(ConfigError, match="k_min"):
        sample_primitives(TAXONOMY.get("security"), seed=0, index=0, k_min=k_min, k_max=k_max)


# -- user taxonomies --------------------------------------------------------------------------


def _user_domain(domain_id: str = "bioinformatics", prefix: str = "bio") -> dict[str, Any]:
    return {
        "id": domain_id,
        "title": domain_id.replace("_", " ").title(),
        "in_table10": False,
        "skill_types": ["Parsing", "Algorithms"],
        "example_skill": "Align reads to a reference",
        "module": {
            "role": "You are a Bioinformatics Task Builder. You write sequence-analysis tasks.",
            "focus": ["Parsing: reading FASTA and FASTQ files.", "Algorithms: alignment."],
            "task": "Produce one task over files under /app with outputs in /app/output.",
        },
        "primitives": [
            {"id": f"{prefix}-fastq-quality", "type": "Parsing", "skill": "Trim FASTQ reads"},
            {"id": f"{prefix}-kmer-count", "type": "Algorithms", "skill": "Count 21-mers"},
            {"id": f"{prefix}-orf-find", "type": "Algorithms", "skill": "Find open reading frames"},
        ],
    }


def _write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_user_file_adds_a_domain(tmp_path: Path) -> None:
    path = _write(tmp_path / "bio.yaml", _user_domain())
    taxonomy = load_taxonomy([path])
    assert tuple(taxonomy.domains) == (*DOMAIN_ORDER, "bioinformatics")
    bio = taxonomy.get("Bioinformatics")
    assert bio.source == str(path)
    assert len(bio.primitives) == 3  # user files may be small
    assert bio.image == "ttgen/domain:bioinformatics"
    assert taxonomy.resolve("all")[-1] is bio
    assert "## Domain: Bioinformatics" in bio.module_text()
    assert load_taxonomy() is TAXONOMY and "bioinformatics" not in TAXONOMY


def test_user_file_replaces_a_domain(tmp_path: Path) -> None:
    data = _user_domain("data_science", "myds")
    data["title"] = "Data Science"
    path = _write(tmp_path / "mine.yaml", data)
    taxonomy = load_taxonomy([path])
    assert tuple(taxonomy.domains) == DOMAIN_ORDER  # keeps its place
    replaced = taxonomy.get("data-science")
    assert replaced.source == str(path)
    assert _ids(list(replaced.primitives)) == [
        "myds-fastq-quality",
        "myds-kmer-count",
        "myds-orf-find",
    ]
    assert taxonomy.get("security") is TAXONOMY.get("security")
    # The replaced domain's ids are free again, and the cached default is untouched.
    assert len(TAXONOMY.get("data_science").primitives) >= 25
    picked = sample_primitives(replaced, seed=0, index=0, k_min=3, k_max=3)
    assert sorted(_ids(picked)) == sorted(_ids(list(replaced.primitives)))


def test_user_folder(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", _user_domain("bioinformatics", "bio"))
    _write(tmp_path / "b.yml", _user_domain("chemistry", "chem"))
    (tmp_path / "notes.txt").write_text("not a taxonomy")
    taxonomy = load_taxonomy([tmp_path])
    assert list(taxonomy.domains)[-2:] == ["bioinformatics", "chemistry"]


def test_two_user_files_for_one_domain(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", _user_domain("bioinformatics", "bio"))
    b = _write(tmp_path / "b.yaml", _user_domain("bioinformatics", "bio2"))
    with pytest.raises(ConfigError, match="already defined") as err:
        load_taxonomy([a, b])
    assert str(b) in str(err.value) and str(a) in str(err.value)


def test_missing_user_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_taxonomy([tmp_path / "nope.yaml"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no taxonomy files"):
        load_taxonomy([tmp_path / "empty"])


def _drop(d: dict[str, Any], *keys: str) -> None:
    for key in keys[:-1]:
        d = d[key]
    del d[keys[-1]]


def _set(d: Any, keys: tuple[Any, ...], value: Any) -> None:
    for key in keys[:-1]:
        d = d[key]
    d[keys[-1]] = value


MALFORMED: list[tuple[str, Any, str]] = [
    ("missing title", lambda d: _drop(d, "title"), "title: missing"),
    ("missing task", lambda d: _drop(d, "module", "task"), "module.task: missing"),
    ("missing skill", lambda d: _drop(d, "primitives", 1, "skill"), "primitives[1].skill: missing"),
    ("unknown key", lambda d: _set(d, ("colour",), "red"), "colour: unknown key"),
    ("bad bool", lambda d: _set(d, ("in_table10",), "yes"), "in_table10: expected true or false"),
    ("types not list", lambda d: _set(d, ("skill_types",), "Parsing"), "skill_types: expected a list"),
    ("focus empty", lambda d: _set(d, ("module", "focus"), []), "module.focus: must not be empty"),
    ("role not text", lambda d: _set(d, ("module", "role"), 3), "module.role: expected a string"),
    ("module not map", lambda d: _set(d, ("module",), ["x"]), "module: expected a mapping"),
    ("skill not text", lambda d: _set(d, ("primitives", 2, "skill"), 5), "primitives[2].skill: expected a string"),
    ("unknown type", lambda d: _set(d, ("primitives", 0, "type"), "Networking"), "primitives[0].type: 'Networking' is not one of"),
    ("duplicate id", lambda d: _set(d, ("primitives", 2, "id"), "bio-kmer-count"), "primitives[2].id: duplicate primitive id"),
    ("bad primitive id", lambda d: _set(d, ("primitives", 0, "id"), "Fastq"), "primitives[0].id: 'Fastq' is not kebab-case"),
    ("bad domain id", lambda d: _set(d, ("id",), "Bio Informatics"), "id: 'Bio Informatics' is not a snake_case"),
    ("too few", lambda d: d["primitives"].pop(), "primitives: has 2 primitives; at least 3"),
    ("primitives not list", lambda d: _set(d, ("primitives",), {"a": 1}), "primitives: expected a list"),
    ("duplicate type", lambda d: _set(d, ("skill_types",), ["Parsing", "Parsing"]), "skill_types[1]: 'Parsing' is listed twice"),
    ("empty text", lambda d: _set(d, ("example_skill",), "  "), "example_skill: must not be empty"),
    ("id used elsewhere", lambda d: _set(d, ("primitives", 0, "id"), "ds-pca-variance"), "'data_science'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "expected"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_user_file(tmp_path: Path, change: Any, expected: str) -> None:
    data = _user_domain()
    change(data)
    path = _write(tmp_path / "bad.yaml", data)
    with pytest.raises(ConfigError) as err:
        load_taxonomy([path])
    message = str(err.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id: a\nid: b\n", "duplicate key 'id'"),
        ("id: [unclosed\n", "invalid YAML"),
        ("", "is empty"),
        ("- just\n- a list\n", "(top level): expected a mapping"),
    ],
)
def test_unparsable_user_file(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_taxonomy([path])
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_packaged_rules_are_stricter(tmp_path: Path) -> None:
    path = _write(tmp_path / "bioinformatics.yaml", _user_domain())
    assert len(load_domain_file(path).primitives) == 3
    with pytest.raises(ConfigError, match=r"primitives: has 3 primitives; at least 25"):
        load_domain_file(path, packaged=True)

    data = _user_domain()
    data["primitives"] = [
        {"id": f"bio-p{i}", "type": "Parsing", "skill": f"Parse format {i}"} for i in range(24)
    ] + [{"id": "bio-align", "type": "Algorithms", "skill": "Align two sequences"}]
    _write(path, data)
    with pytest.raises(ConfigError, match=r"skill type 'Algorithms' has 1 primitives"):
        load_domain_file(path, packaged=True)

    renamed = _write(tmp_path / "other.yaml", _user_domain())
    with pytest.raises(ConfigError, match=r"id: 'bioinformatics' differs from the file name"):
        load_domain_file(renamed, packaged=True)
