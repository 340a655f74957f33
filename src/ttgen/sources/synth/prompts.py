"""The generation prompts (text in prompts/*.md) and how they are filled in.

Skill-based generation follows the structure the paper describes (spec §1.2.2, Fig. 11): a
system prompt with the role, the domain module, universal task requirements, the XML output
format and critical rules against leaking the solution; a user message with the domain, the
chosen primitive skills, the domain image's Dockerfile and the difficulty. Seed-based generation
(§1.2.1) uses a "task adapter" system prompt and a user message with the problem, its domain and,
when there is one, the reference solution as ground truth for the tests only.

Templates use ``{{name}}`` placeholders; rendering fails on a placeholder without a value, so a
template and its caller cannot drift apart silently.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

PROMPTS_DIR = Path(__file__).parent / "prompts"
_PLACEHOLDER_RE = re.compile(r"\{\{(\w+)\}\}")

DIFFICULTIES = ("easy", "medium", "hard")
DIFFICULTY_TEXT = {
    "easy": (
        "a focused task with a few steps: one or two small input files, one or two outputs, "
        "a couple of edge cases; a competent engineer finishes it in about 10 minutes"
    ),
    "medium": (
        "a multi-step task: several input files or a messy dataset, two or more outputs that "
        "depend on each other, several edge cases the description spells out; a competent "
        "engineer needs 20 to 40 minutes"
    ),
    "hard": (
        "a demanding multi-stage task: interacting components, subtle edge cases, a trap that "
        "a quick solution falls into (precision, ordering, encoding, concurrency or scale), "
        "outputs checked in detail; an expert needs an hour or more"
    ),
}


@cache
def template(name: str) -> str:
    return (PROMPTS_DIR / f"{name}.md").read_text(encoding="utf-8")


def render(name: str, **values: object) -> str:
    """Fill in template `name`; every placeholder needs a value."""
    text = template(name)
    missing = sorted(set(_PLACEHOLDER_RE.findall(text)) - set(values))
    if missing:
        raise KeyError(f"prompt {name!r}: no value for {', '.join(missing)}")
    return _PLACEHOLDER_RE.sub(lambda m: str(values[m.group(1)]), text)


def skill_system_prompt(domain_module: str) -> str:
    return render(
        "skill_system", domain_module=domain_module.strip(), output_format=template("output_format")
    ).strip()


def skill_user_message(
    *, domain_title: str, skills: list[tuple[str, str]], dockerfile: str, difficulty: str
) -> str:
    """`skills` as (skill type, skill) pairs, in the order they were drawn."""
    lines = "\n".join(f"{i}. [{kind}] {skill}" for i, (kind, skill) in enumerate(skills, 1))
    return render(
        "skill_user",
        domain_title=domain_title,
        skills=lines,
        n_skills=len(skills),
        dockerfile=dockerfile.strip(),
        difficulty=difficulty,
        difficulty_text=DIFFICULTY_TEXT[difficulty],
    ).strip()


def seed_system_prompt() -> str:
    return render("seed_system", output_format=template("output_format")).strip()


def seed_user_message(
    *, problem: str, domain: str | None, reference_solution: str | None, dockerfile: str
) -> str:
    reference = (
        render("seed_reference", reference_solution=reference_solution.strip())
        if reference_solution and reference_solution.strip()
        else ""
    )
    return render(
        "seed_user",
        problem=problem.strip(),
        domain=domain or "general",
        reference_block=reference,
        dockerfile=dockerfile.strip(),
    ).strip()


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def format_retry_message(problems: list[str]) -> str:
    return render("format_retry", problems=_bullets(problems)).strip()


def repair_message(problems: list[str]) -> str:
    return render("repair", problems=_bullets(problems)).strip()


def novelty_note(titles: list[str]) -> str:
    return render("novelty", titles=_bullets(titles)).rstrip()
