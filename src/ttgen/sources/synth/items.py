"""Work items: what each generated task is asked to be.

Skill-based: for each domain and index i < n, the sampler draws 3-5 primitive skills
(reproducibly: task i of a domain gets the same skills whatever n is and on resume) and the
difficulty ("mixed" draws one per task, also reproducibly). Task ids follow the released corpus:
``<domain>_task_<NNNN>``.

Seed-based: one item per seed record {problem, domain?, reference_solution?}; the task runs in
the image of the seed's domain when that names a task domain, else in ``image_domain``
(scientific computing by default: the paper aims seeds at scientific computing, algorithmic and
domain-specific coding problems). Task ids are ``seed_<id or NNNN>``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ttgen.sandbox.domains import DOMAIN_IMAGES, dockerfile_text, image_ref
from ttgen.sources.records import (
    MISSING,
    BadRecord,
    FieldMap,
    first_user_turn,
    iter_records,
    normalized_key,
)
from ttgen.sources.skills_taxonomy import Domain, Taxonomy, sample_primitives
from ttgen.sources.synth import prompts
from ttgen.sources.synth.engine import WorkItem

DIFFICULTY_CHOICES = (*prompts.DIFFICULTIES, "mixed")
DEFAULT_SEED_IMAGE_DOMAIN = "scientific_computing"


def _difficulty(choice: str, seed: int, domain: str, index: int) -> str:
    if choice != "mixed":
        return choice
    return random.Random(f"difficulty:{seed}:{domain}:{index}").choice(prompts.DIFFICULTIES)


def skill_items(
    domains: Iterable[Domain],
    *,
    n: int,
    difficulty: str,
    seed: int = 0,
    k_min: int = 3,
    k_max: int = 5,
    across_types: bool = True,
    start: int = 0,
    model: str = "",
) -> list[WorkItem]:
    """`n` items per domain (indices start .. start+n-1)."""
    if difficulty not in DIFFICULTY_CHOICES:
        raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTY_CHOICES)}")
    items = []
    for domain in domains:
        # A user-defined domain without a domain image of its own runs in the general image.
        image_domain = domain.id if domain.id in DOMAIN_IMAGES else "general"
        dockerfile = dockerfile_text(image_domain)
        system = prompts.skill_system_prompt(domain.module_text())
        for index in range(start, start + n):
            picked = sample_primitives(
                domain, seed=seed, index=index, k_min=k_min, k_max=k_max, across_types=across_types
            )
            level = _difficulty(difficulty, seed, domain.id, index)
            user = prompts.skill_user_message(
                domain_title=domain.title,
                skills=[(p.type, p.skill) for p in picked],
                dockerfile=dockerfile,
                difficulty=level,
            )
            items.append(
                WorkItem(
                    id=f"{domain.id}_task_{index:04d}",
                    kind="skills",
                    system=system,
                    user=user,
                    novelty_key=domain.id,
                    image=image_ref(image_domain),
                    metadata={
                        "source": "skill_synth",
                        "domain": domain.id,
                        "difficulty": level,
                        "skills": [p.id for p in picked],
                        "skill_types": [p.type for p in picked],
                        "generator_model": model,
                        "sampler_seed": seed,
                        "index": index,
                    },
                    info={
                        "domain": domain.id,
                        "difficulty": level,
                        "skills": [{"id": p.id, "type": p.type, "skill": p.skill} for p in picked],
                        "sampler": {"seed": seed, "index": index, "k_min": k_min, "k_max": k_max},
                    },
                )
            )
    return items


@dataclass
class Seed:
    problem: str
    origin: str
    domain: str | None = None
    reference_solution: str | None = None
    id: str | None = None


SEED_FIELDS: dict[str, tuple[str, ...]] = {
    "problem": ("problem", "prompt", "question", "description", "instruction"),
    "domain": ("domain", "category", "topic", "subject"),
    "reference_solution": ("reference_solution", "solution", "reference", "code"),
    "id": ("id", "seed_id", "task_id", "name"),
}


@dataclass
class LoadedSeeds:
    seeds: list[Seed]
    bad: list[BadRecord]
    duplicates: int


def _text(value: Any) -> str | None:
    if value is MISSING or value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return None


def load_seeds(
    source: str,
    *,
    fields: dict[str, str] | None = None,
    limit: int | None = None,
    config: str | None = None,
    split: str | None = None,
) -> LoadedSeeds:
    """Seed records from any input `iter_records` reads; a record without a problem is bad,
    a problem seen before (whitespace-normalized) a duplicate. `limit` counts usable seeds."""
    fmap = FieldMap(SEED_FIELDS, fields)
    seeds: list[Seed] = []
    bad: list[BadRecord] = []
    seen: set[bytes] = set()
    duplicates = 0
    for entry in iter_records(source, config=config, split=split):
        if limit is not None and len(seeds) >= limit:
            break
        if isinstance(entry, BadRecord):
            bad.append(entry)
            continue
        data = entry.data
        value = fmap.get(data, "problem")
        if value is MISSING and "problem" not in fmap.overrides:
            chat = data.get("messages") or data.get("conversations")
            value = first_user_turn(chat) if isinstance(chat, list) else MISSING
        problem = _text(value)
        if not problem or not problem.strip():
            bad.append(
                BadRecord(entry.origin, f"no problem text (looked for {fmap.describe('problem')})")
            )
            continue
        key = normalized_key(problem)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        solution = fmap.get(data, "reference_solution")
        if solution is not MISSING and not isinstance(solution, str):
            solution = json.dumps(solution, ensure_ascii=False, indent=2)
        seeds.append(
            Seed(
                problem=problem,
                origin=entry.origin,
                domain=_text(fmap.get(data, "domain")),
                reference_solution=None if solution is MISSING else solution,
                id=_text(fmap.get(data, "id")),
            )
        )
    return LoadedSeeds(seeds, bad, duplicates)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40]


def seed_items(
    seeds: Iterable[Seed],
    *,
    taxonomy: Taxonomy,
    image_domain: str = DEFAULT_SEED_IMAGE_DOMAIN,
    model: str = "",
) -> list[WorkItem]:
    if image_domain not in DOMAIN_IMAGES:
        raise ValueError(
            f"unknown image domain {image_domain!r}; known: {', '.join(DOMAIN_IMAGES)}"
        )
    system = prompts.seed_system_prompt()
    items: list[WorkItem] = []
    used: set[str] = set()
    for i, s in enumerate(seeds):
        domain_id = image_domain
        if s.domain and s.domain in taxonomy:
            domain_id = taxonomy.get(s.domain).id
        item_id = f"seed_{_slug(s.id)}" if s.id and _slug(s.id) else f"seed_{i:04d}"
        if item_id in used:
            item_id = f"{item_id}_{i:04d}"
        used.add(item_id)
        info: dict[str, Any] = {
            "domain": domain_id,
            "seed": {
                "origin": s.origin,
                "id": s.id,
                "domain": s.domain,
                "problem": s.problem,
                "has_reference_solution": bool(s.reference_solution),
            },
        }
        items.append(
            WorkItem(
                id=item_id,
                kind="seeds",
                system=system,
                user=prompts.seed_user_message(
                    problem=s.problem,
                    domain=s.domain,
                    reference_solution=s.reference_solution,
                    dockerfile=dockerfile_text(domain_id),
                ),
                novelty_key=f"seed:{domain_id}",
                image=image_ref(domain_id),
                metadata={
                    "source": "seed_synth",
                    "domain": domain_id,
                    "seed_domain": s.domain,
                    "seed_origin": s.origin,
                    "has_reference_solution": bool(s.reference_solution),
                    "generator_model": model,
                },
                info=info,
                reference_solution=s.reference_solution,
            )
        )
    return items
