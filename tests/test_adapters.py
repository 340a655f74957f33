"""`ttgen adapt`: records → Harbor tasks (the paper's suffixes, tests, names, resume, CLI, Docker)."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import BASE_IMAGE
from ttgen.cli import app
from ttgen.sources.adapters import (
    CODE_SUFFIX,
    MATH_SUFFIX,
    SWE_SUFFIX,
    AdaptError,
    AdaptOptions,
    adapt,
)
from ttgen.sources.records import SourceError
from ttgen.task import NO_TESTS_SCRIPT, Task

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "adapters"
WIDE = {"COLUMNS": "300"}


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def manifest(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "adapt.jsonl").read_text().splitlines()]


def toml(task: Path) -> dict:
    return tomllib.loads((task / "task.toml").read_text())


def tree(task: Path) -> list[str]:
    return sorted(p.relative_to(task).as_posix() for p in task.rglob("*") if p.is_file())


# -- instructions -----------------------------------------------------------------------------------


def test_suffixes_are_the_papers_word_for_word():
    assert MATH_SUFFIX == "\n\nPlease place your final answer in a file named '/app/solution.txt'."
    assert CODE_SUFFIX == (
        "\n\nWrite Python code to solve the problem. Please place the solution code in a file "
        "named `/app/solution.py`."
    )
    assert SWE_SUFFIX == (
        "\n\nPlease first localize the bug based on the issue statement, generate *SEARCH/REPLACE* "
        "edits to fix the issue, and save the diff to a file named `/app/solution.patch`."
    )


@pytest.mark.parametrize(
    ("kind", "suffix", "extra"),
    [
        ("math", MATH_SUFFIX, {}),
        ("code", CODE_SUFFIX, {}),
        ("swe", SWE_SUFFIX, {}),
        ("generic", "", {}),
        ("generic", "\n\nWork in /app.", {"suffix": "\n\nWork in /app."}),
    ],
)
def test_instruction_is_prompt_plus_suffix(tmp_path, kind, suffix, extra):
    prompt = "Fix it.\n\n[start of a.py]\n1 x = 1\n[end of a.py]\n  "  # trailing space kept
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "r1", "prompt": prompt}])
    adapt(kind, src, tmp_path / "out", AdaptOptions(**extra))
    task = tmp_path / "out" / f"{kind}-r1"
    assert (task / "instruction.md").read_bytes() == (prompt + suffix).encode()


# -- task layout --------------------------------------------------------------------------------


def test_math_task_with_answer_has_tests_and_solution(tmp_path):
    src = write_jsonl(tmp_path / "math.jsonl", [
        {"id": "Q/17", "problem": "What is $\\frac{1}{2}+\\frac{1}{4}$?", "answer": "\\frac{3}{4}"},
        {"problem": "Prove that there are infinitely many primes."},
    ])  # fmt: skip
    summary = adapt("math", src, tmp_path / "out")
    assert (summary.read, summary.tasks, summary.with_tests, summary.n_bad) == (2, 2, 1, 0)
    task = tmp_path / "out" / "math-q-17"
    assert tree(task) == [
        "environment/Dockerfile", "instruction.md", "solution/solve.sh", "task.toml",
        "tests/expected_answer.txt", "tests/test.sh", "tests/verify_math.py",
    ]  # fmt: skip
    assert (task / "tests" / "expected_answer.txt").read_text() == "\\frac{3}{4}\n"
    assert (
        "cat > /app/solution.txt <<'TTGEN_EOF'\n\\frac{3}{4}\nTTGEN_EOF"
        in (task / "solution" / "solve.sh").read_text()
    )
    assert (task / "tests" / "test.sh").stat().st_mode & 0o111
    assert (task / "environment" / "Dockerfile").read_text() == (
        "FROM ttgen/domain:general\nWORKDIR /app\n"
    )
    cfg = toml(task)
    assert cfg["metadata"] == {
        "source": "adapter", "adapter": "math", "dataset": str(src), "origin": "math.jsonl:1",
        "record_id": "Q/17", "has_tests": True,
    }  # fmt: skip
    assert cfg["agent"]["timeout_sec"] == 900
    assert cfg["verifier"]["timeout_sec"] == 120
    assert cfg["environment"] == {"cpus": 1, "memory_mb": 2048}
    loaded = Task.load(task)  # a valid Harbor task for the rest of ttgen
    assert loaded.test_script is not None and loaded.solve_script is not None

    plain = tmp_path / "out" / "math-000001"  # no id: the record's index
    # No tests, by design; Harbor needs tests/test.sh, so it gets the one that gives no reward.
    assert tree(plain) == ["environment/Dockerfile", "instruction.md", "task.toml", "tests/test.sh"]
    assert (plain / "tests" / "test.sh").read_text() == NO_TESTS_SCRIPT
    assert (plain / "tests" / "test.sh").stat().st_mode & 0o111
    assert toml(plain)["metadata"]["has_tests"] is False
    assert loaded.has_tests and not Task.load(plain).has_tests


def test_math_answer_from_a_worked_solution_and_mapped_fields(tmp_path):
    src = write_jsonl(tmp_path / "m.jsonl", [
        {"problem": "r?", "solution": "So $r = \\boxed{\\frac{3}{5}}$."},
        {"data": {"q": "2+3?"}, "meta": {"final": 5}},
    ])  # fmt: skip
    adapt("math", src, tmp_path / "a")
    assert (tmp_path / "a" / "math-000000" / "tests" / "expected_answer.txt").read_text() == (
        "\\frac{3}{5}\n"
    )
    summary = adapt(
        "math",
        src,
        tmp_path / "b",
        AdaptOptions(fields={"prompt": "data.q", "answer": "meta.final"}),
    )
    assert summary.tasks == 1 and summary.n_bad == 1  # record 1 has no data.q
    assert "no prompt (looked for 'data.q'" in summary.bad[0].problem
    task = tmp_path / "b" / "math-000001"
    assert (task / "instruction.md").read_text() == "2+3?" + MATH_SUFFIX
    assert (task / "tests" / "expected_answer.txt").read_text() == "5\n"


def test_options_reach_task_toml_and_dockerfile(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", [
        {"id": 1, "question": "Echo.", "tests": [{"input": "a\n", "output": "a\n"}] * 20},
    ])  # fmt: skip
    opts = AdaptOptions(image="registry.local/py:3.12", agent_timeout_sec=1800, cpus=2,
                        memory_mb=4096, case_timeout_sec=5)  # fmt: skip
    adapt("code", src, tmp_path / "out", opts)
    task = tmp_path / "out" / "code-1"
    cfg = toml(task)
    assert cfg["agent"]["timeout_sec"] == 1800
    assert cfg["environment"] == {"cpus": 2, "memory_mb": 4096}
    assert cfg["verifier"]["timeout_sec"] == 20 * 5 + 30  # cases x case timeout + margin
    assert json.loads((task / "tests" / "cases.json").read_text())["case_timeout_sec"] == 5
    assert (
        (task / "environment" / "Dockerfile")
        .read_text()
        .startswith("FROM registry.local/py:3.12\n")
    )


def test_code_test_forms(tmp_path):
    apps_call = {"fn_name": "add", "inputs": [[1, 2], [3, 4]], "outputs": [[3], [7]]}
    src = write_jsonl(tmp_path / "c.jsonl", [
        {"id": "apps", "question": "Add.", "input_output": json.dumps(apps_call),
         "solutions": json.dumps(["def add(a, b):\n    return a + b\n"])},
        {"id": "cc", "question": "Echo.", "public_tests": {"input": ["x\n"], "output": ["x\n"]},
         "solution": "Here:\n```python\nprint(input())\n```\nDone."},
        {"id": "lcb", "question": "Double.", "public_test_cases": json.dumps(
            [{"input": "[1, 2]\n3", "output": "[2, 4]", "testtype": "functional"}]),
         "func_name": "double"},
        {"id": "none", "question": "No tests here.", "solution": "print(1)"},
        {"id": "broken", "question": "Mismatch.", "tests": {"inputs": ["1"], "outputs": []}},
        {"id": "bad-json", "question": "Bad.", "input_output": "{not json"},
    ])  # fmt: skip
    summary = adapt("code", src, tmp_path / "out")
    assert (summary.tasks, summary.with_tests, summary.n_bad) == (4, 3, 2)
    out = tmp_path / "out"
    cases = json.loads((out / "code-apps" / "tests" / "cases.json").read_text())
    assert cases["mode"] == "call" and cases["fn_name"] == "add"
    assert cases["cases"][1] == {"input": [3, 4], "output": [7]}
    assert "return a + b" in (out / "code-apps" / "solution" / "solve.sh").read_text()
    assert (
        "cat > /app/solution.py <<'TTGEN_EOF'\nprint(input())\nTTGEN_EOF"
        in (out / "code-cc" / "solution" / "solve.sh").read_text()
    )
    lcb = json.loads((out / "code-lcb" / "tests" / "cases.json").read_text())
    assert lcb["cases"] == [{"input": [[1, 2], 3], "output": [2, 4]}]
    assert tree(out / "code-none") == [
        "environment/Dockerfile", "instruction.md", "task.toml", "tests/test.sh",
    ]  # fmt: skip
    assert (out / "code-none" / "tests" / "test.sh").read_text() == NO_TESTS_SCRIPT
    problems = {b.origin: b.problem for b in summary.bad}
    assert "1 inputs but 0 outputs" in problems["c.jsonl:5"]
    assert "not valid JSON" in problems["c.jsonl:6"]


def test_swe_files_land_under_app_and_fileless_prompts_are_skipped(tmp_path):
    prompt = (
        "Bug in util.\n[start of pkg/util.py]\n1 def f():\n2     return 1\n[end of pkg/util.py]\n"
    )
    src = write_jsonl(tmp_path / "swe.jsonl", [
        {"instance_id": "org__repo-1", "prompt": prompt},
        {"instance_id": "org__repo-2", "prompt": "An issue with no code at all."},
        {"instance_id": "org__repo-3", "prompt": "[start of ../../etc/x]\nboom\n[end of ../../etc/x]"},
    ])  # fmt: skip
    summary = adapt("swe", src, tmp_path / "out")
    assert (summary.tasks, summary.no_files, summary.n_bad) == (1, 1, 1)
    task = tmp_path / "out" / "swe-org-repo-1"
    assert (task / "environment" / "files" / "pkg" / "util.py").read_text() == (
        "def f():\n    return 1\n"
    )
    assert (task / "environment" / "Dockerfile").read_text() == (
        "FROM ttgen/domain:general\nWORKDIR /app\nCOPY files/ /app/\n"
    )
    assert (task / "instruction.md").read_text() == prompt + SWE_SUFFIX  # the prompt stays
    assert "'..' would leave /app" in summary.bad[0].problem
    lines = manifest(tmp_path / "out")
    assert lines[1] == {
        "origin": "swe.jsonl:2",
        "skipped": "no files",
        "reason": "no code files found",
    }

    kept = adapt("swe", src, tmp_path / "all", AdaptOptions(allow_no_files=True))
    assert kept.tasks == 2 and kept.no_files == 0
    assert (
        "COPY"
        not in (tmp_path / "all" / "swe-org-repo-2" / "environment" / "Dockerfile").read_text()
    )


def test_generic_files_as_object_or_list(tmp_path):
    src = write_jsonl(tmp_path / "g.jsonl", [
        {"id": "a", "instruction": "Fix report.py.", "files": {"report.py": "print(1)\n", "data/x.csv": "a,b\n"}},
        {"id": "b", "instruction": "Fix it.", "files": json.dumps([{"path": "src/m.py", "content": "x = 1\n"}])},
        {"id": "c", "instruction": "Evil.", "files": {"/etc/passwd": "root"}},
        {"id": "d", "instruction": "Clash.", "files": {"a": "1", "a/b": "2"}},
    ])  # fmt: skip
    summary = adapt("generic", src, tmp_path / "out")
    assert summary.tasks == 2
    out = tmp_path / "out"
    assert (out / "generic-a" / "environment" / "files" / "data" / "x.csv").read_text() == "a,b\n"
    assert (out / "generic-b" / "environment" / "files" / "src" / "m.py").read_text() == "x = 1\n"
    problems = [b.problem for b in summary.bad]
    assert "absolute paths are not allowed" in problems[0]
    assert "file 'a' is also the folder of 'a/b'" in problems[1]


# -- names, duplicates, limit, resume -------------------------------------------------------------


def test_names_are_stable_slugs_and_collisions_get_a_deterministic_suffix(tmp_path):
    rows = [{"id": "Two Sum", "prompt": "p1"}, {"id": "two-sum", "prompt": "p2"},
            {"id": "x" * 200, "prompt": "p3"}, {"id": "!!!", "prompt": "p4"}]  # fmt: skip
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    adapt("generic", src, tmp_path / "a")
    names = [x["task"] for x in manifest(tmp_path / "a")]
    assert names[0] == "generic-two-sum"
    assert names[1].startswith("generic-two-sum-") and len(names[1]) == len("generic-two-sum-") + 8
    assert len(names[2]) <= len("generic-") + 80
    assert names[3] == "generic-000003"
    adapt("generic", src, tmp_path / "b")
    assert [x["task"] for x in manifest(tmp_path / "b")] == names


def test_duplicates_are_dropped_and_limit_counts_tasks(tmp_path):
    src = write_jsonl(tmp_path / "m.jsonl", [
        {"problem": "What is  2+2?"}, {"problem": "What is 2+2?\n"}, "{broken",
        {"problem": "What is 3+3?"}, {"problem": "What is 4+4?"},
    ])  # fmt: skip
    summary = adapt("math", src, tmp_path / "out", AdaptOptions(limit=2))
    assert (summary.tasks, summary.duplicates, summary.n_bad, summary.read) == (2, 1, 1, 4)
    lines = manifest(tmp_path / "out")
    assert lines[1] == {"origin": "m.jsonl:2", "skipped": "duplicate", "duplicate_of": "m.jsonl:1"}
    assert lines[2]["skipped"] == "bad record" and "invalid JSON" in lines[2]["reason"]
    assert len(lines) == 4  # reading stopped at the second task


def test_rerun_is_a_resume_and_changes_are_rewritten(tmp_path):
    out = tmp_path / "out"
    first = adapt("math", EXAMPLES / "math.jsonl", out)
    assert first.written == first.tasks == 8
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = adapt("math", EXAMPLES / "math.jsonl", out)
    assert (again.written, again.unchanged) == (0, 8)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "adapt.jsonl"} == {
        p: t for p, t in stamps.items() if p.name != "adapt.jsonl"
    }  # fmt: skip
    assert all(x.get("status") in ("unchanged", None) for x in manifest(out))

    # A hand-edited task and a stray file are put back; a new image rewrites everything.
    (out / "math-dice-prime-sum" / "tests" / "expected_answer.txt").write_text("7\n")
    (out / "math-000002" / "stray.txt").write_text("x")
    third = adapt("math", EXAMPLES / "math.jsonl", out)
    assert (third.written, third.unchanged) == (2, 6)
    assert (out / "math-dice-prime-sum" / "tests" / "expected_answer.txt").read_text() == (
        "\\frac{5}{12}\n"
    )
    assert not (out / "math-000002" / "stray.txt").exists()
    fourth = adapt("math", EXAMPLES / "math.jsonl", out, AdaptOptions(image="other:1"))
    assert fourth.written == 8


def test_usage_errors_raise_before_writing(tmp_path):
    src = write_jsonl(tmp_path / "m.jsonl", [{"problem": "x"}])
    with pytest.raises(AdaptError, match="unknown adapter 'physics'"):
        adapt("physics", src, tmp_path / "o1")
    with pytest.raises(AdaptError, match="--suffix applies only to the generic adapter"):
        adapt("math", src, tmp_path / "o2", AdaptOptions(suffix="x"))
    with pytest.raises(SourceError, match="unknown field 'question'"):
        adapt("math", src, tmp_path / "o3", AdaptOptions(fields={"question": "q"}))
    with pytest.raises(SourceError, match=r"nope\.jsonl: no such file"):
        adapt("math", tmp_path / "nope.jsonl", tmp_path / "o4")
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 5))


# -- CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def runner(tmp_path, monkeypatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    return CliRunner()


@pytest.mark.parametrize(
    ("kind", "tasks", "with_tests"),
    [("math", 8, 7), ("code", 5, 4), ("swe", 3, 0), ("generic", 3, 0)],
)
def test_cli_on_the_bundled_examples(runner, tmp_path, kind, tasks, with_tests):
    out = tmp_path / kind
    res = runner.invoke(app, ["adapt", kind, "--input", str(EXAMPLES / f"{kind}.jsonl"),
                              "--out", str(out)], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"adapt {kind}" in res.stdout and "manifest:" in res.stdout
    rows = dict(line.split(None, 1) for line in res.stdout.splitlines() if line[:1].isalpha())
    assert rows["tasks"].strip() == str(tasks)
    assert rows["with"].split()[-1] == str(with_tests)  # "with tests  N"
    assert len([p for p in out.iterdir() if p.is_dir()]) == tasks

    res = runner.invoke(app, ["adapt", kind, "-i", str(EXAMPLES / f"{kind}.jsonl"), "-o",
                              str(out), "--json"])  # fmt: skip
    data = json.loads(res.stdout)
    assert (data["tasks"], data["written"], data["unchanged"]) == (tasks, 0, tasks)


def test_cli_bad_records_exit_1_and_are_listed(runner, tmp_path):
    src = write_jsonl(tmp_path / "m.jsonl", [{"problem": "ok"}, "{nope", {"answer": 3}])
    res = runner.invoke(app, ["adapt", "math", "-i", str(src), "-o", str(tmp_path / "o")], env=WIDE)
    assert res.exit_code == 1, res.output
    assert "2 bad record(s)" in res.stderr
    assert "m.jsonl:2: invalid JSON" in res.stderr
    assert "m.jsonl:3: no prompt (looked for prompt, question" in res.stderr


def test_cli_usage_errors_exit_2(runner, tmp_path):
    src = write_jsonl(tmp_path / "m.jsonl", [{"problem": "ok"}])
    cases = [
        (["adapt", "math", "-i", str(tmp_path / "missing.parquet"), "-o", "o"], "missing.parquet"),
        (["adapt", "chemistry", "-i", str(src), "-o", "o"], "unknown adapter 'chemistry'"),
        (["adapt", "math", "-i", str(src), "-o", "o", "--suffix", "x"], "--suffix applies only"),
        (["adapt", "math", "-i", str(src), "-o", "o", "--field", "prompt"], "expected KEY=VALUE"),
        (["adapt", "swe", "-i", str(src), "-o", "o", "--case-timeout", "3"], "--case-timeout"),
    ]
    for args, message in cases:
        res = runner.invoke(app, args, env=WIDE)
        assert res.exit_code == 2, (args, res.output)
        assert message in res.stderr, (args, res.stderr)


# -- Docker ---------------------------------------------------------------------------------------


async def test_adapted_tasks_validate_in_docker(docker_ready, tmp_path):
    """The oracle of adapted math/code tasks scores 1 and the nop agent 0 in real containers."""
    from ttgen.rollout.job import JobOptions
    from ttgen.rollout.validate import validate_tasks
    from ttgen.task import find_tasks

    lines = (EXAMPLES / "math.jsonl").read_text().splitlines()
    math_src = write_jsonl(tmp_path / "math.jsonl", [lines[1], lines[3]])  # \frac and \sqrt
    code_lines = (EXAMPLES / "code.jsonl").read_text().splitlines()
    code_src = write_jsonl(tmp_path / "code.jsonl", [code_lines[0], code_lines[2]])  # stdio, call
    opts = AdaptOptions(image=BASE_IMAGE)
    tasks = tmp_path / "tasks"
    assert adapt("math", math_src, tasks, opts).with_tests == 2
    assert adapt("code", code_src, tmp_path / "code-tasks", opts).with_tests == 2
    found = find_tasks([tasks, tmp_path / "code-tasks"])
    assert len(found) == 4
    verdicts = await validate_tasks(found, tmp_path / "val", JobOptions(n_concurrent=2, retries=1))
    got = {v.task: (v.verdict, v.rewards) for v in verdicts}
    assert got == {
        name: ("valid", {"nop": 0, "oracle": 1})
        for name in ("math-dice-prime-sum", "math-distance-1-2-4-4", "code-4021", "code-leetcode-3")
    }, got
    stdout = next((tmp_path / "val").glob("code-leetcode-3__oracle/verifier/test-stdout.txt"))
    assert "case 7/7: pass" in stdout.read_text()
    nop_out = next((tmp_path / "val").glob("math-dice-prime-sum__nop/verifier/test-stdout.txt"))
    assert "/app/solution.txt does not exist" in nop_out.read_text()


def test_tasks_without_tests_pass_the_check_and_are_told_apart(tmp_path):
    """Every adapter kind's tasks without tests: tests/test.sh is the no-tests script, `tasks
    check` says so (valid, a warning), and ttgen knows they have no tests."""
    from ttgen.check import check_task

    for kind in ("math", "code", "swe", "generic"):
        out = tmp_path / kind
        adapt(kind, EXAMPLES / f"{kind}.jsonl", out)
        for line in manifest(out):
            if "task" not in line:
                continue
            task_dir = out / line["task"]
            result = check_task(task_dir)
            assert result.valid, (task_dir, result.problems)
            assert (task_dir / "tests" / "test.sh").is_file()
            assert Task.load(task_dir).has_tests is line["has_tests"], task_dir
            no_tests = [w for w in result.warnings if "nothing can score the task" in w]
            assert bool(no_tests) is not line["has_tests"], (task_dir, result.warnings)
            assert not any("deprecated" in w or "has_tests" in w for w in result.warnings), (
                result.warnings
            )


async def test_task_without_tests_is_unverified_in_docker(backend, job_name, tmp_path):
    """An adapter task without tests, run for real: the nop agent ends `unverified`, without a
    reward and without running the no-tests script; so does the oracle on a copy given a
    solve.sh (adapter tasks without tests have none); validation says `no_tests`. A task written
    before the script (no tests/ at all) still ends the same way."""
    from ttgen.formats.trial import AgentSpec, Outcome
    from ttgen.rollout.job import JobOptions
    from ttgen.rollout.trial import Trial, TrialSpec
    from ttgen.rollout.validate import validate_tasks

    src = write_jsonl(tmp_path / "m.jsonl", [{"id": "open", "problem": "Prove it."}])
    adapt("math", src, tmp_path / "tasks", AdaptOptions(image=BASE_IMAGE))
    task_dir = tmp_path / "tasks" / "math-open"
    old_dir = tmp_path / "old" / "math-open"  # as adapters wrote it before: no tests/
    shutil.copytree(task_dir, old_dir)
    shutil.rmtree(old_dir / "tests")
    solved_dir = tmp_path / "solved" / "math-open"
    shutil.copytree(task_dir, solved_dir)
    (solved_dir / "solution").mkdir()
    (solved_dir / "solution" / "solve.sh").write_text("#!/bin/bash\necho QED > /app/solution.txt\n")
    for d, agent in ((task_dir, "nop"), (solved_dir, "oracle"), (old_dir, "nop")):
        task = Task.load(d)
        tdir = tmp_path / "trials" / f"{d.parent.name}-{agent}"
        spec = TrialSpec(task=task, trial_name=tdir.name, agent=AgentSpec(name=agent))
        result = await Trial(spec, backend, tdir, job_id=job_name).run()
        assert result.outcome == Outcome.UNVERIFIED, (d, agent, result.exception_info)
        assert result.reward is None and result.verifier_result is None
        assert not (tdir / "verifier" / "test-stdout.txt").exists()  # the script never ran
        if agent == "oracle":
            assert result.agent_result.metadata["exit_code"] == 0

    verdicts = await validate_tasks(
        [task_dir, old_dir], tmp_path / "val", JobOptions(n_concurrent=2, retries=1)
    )
    assert [(v.verdict, v.outcomes, v.rewards) for v in verdicts] == [
        ("no_tests", {"nop": "unverified"}, {"nop": None})
    ] * 2, verdicts
    assert "has no tests" in verdicts[0].reasons[0]


async def test_no_tests_script_gives_harbors_no_reward(backend, job_name, tmp_path):
    """What Harbor runs: the no-tests script exits 0 and leaves reward.json holding {} (Harbor's
    "no reward", not an error), in the adapters' image with nothing else in /logs."""
    src = write_jsonl(tmp_path / "s.jsonl", [{"id": "x", "prompt": "Anything."}])
    adapt("generic", src, tmp_path / "g", AdaptOptions(image=BASE_IMAGE))
    task = Task.load(tmp_path / "g" / "generic-x")
    sandbox = await backend.start(task, job=job_name)
    try:
        await sandbox.upload_dir(tmp_path / "g" / "generic-x" / "tests", "/tests")
        res = await sandbox.exec(
            "rm -rf /logs/verifier; chmod +x /tests/test.sh && /tests/test.sh && "
            "cat /logs/verifier/reward.json",
            user="root",
        )
    finally:
        await sandbox.stop()
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {}


async def test_swe_files_are_in_the_container(backend, job_name, tmp_path):
    summary = adapt("swe", EXAMPLES / "swe.jsonl", tmp_path / "swe", AdaptOptions(image=BASE_IMAGE))
    assert summary.tasks == 3
    task = Task.load(tmp_path / "swe" / "swe-pytextkit-pytextkit-212")
    sandbox = await backend.start(task, job=job_name)
    try:
        res = await sandbox.exec("pwd; find . -type f | sort; sed -n 13,14p pytextkit/iterutils.py")
    finally:
        await sandbox.stop()
    assert res.exit_code == 0, res.stderr
    assert res.stdout.splitlines() == [
        "/app",
        "./README.rst",
        "./pytextkit/__init__.py",
        "./pytextkit/iterutils.py",
        "        if len(chunk) < size:",
        "            return",
    ]
