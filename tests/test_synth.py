"""Task synthesis: the answer format, the gates, the reward plugin, and the generation loop
(retries, repair, novelty, records, resume) against the scripted OpenAI-compatible server."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ttgen.check import check_task
from ttgen.llm import LLMConfig
from ttgen.sources.skills_taxonomy import load_taxonomy
from ttgen.sources.synth import prompts
from ttgen.sources.synth.answer import AnswerFormatError, parse_answer
from ttgen.sources.synth.build import REWARD_PLUGIN, draft_to_task
from ttgen.sources.synth.engine import Synthesizer, SynthOptions, read_records
from ttgen.sources.synth.gates import GateRunner, gate_files, gate_leak, gate_static
from ttgen.sources.synth.items import Seed, seed_items, skill_items
from ttgen.task import Task
from ttgen.testing import Error, ScriptedLLMServer

DATA = Path(__file__).parent / "data" / "synth"
GOOD = (DATA / "sensor_rollup.xml").read_text()
GOOD2 = (DATA / "token_audit.xml").read_text()
LEAKY = (DATA / "leaky.xml").read_text()
HOST_GATES = ("static", "leak", "files")


# -- the answer format --------------------------------------------------------------------------


def test_a_good_answer_parses_into_instruction_files_tests_and_weights():
    d = parse_answer(GOOD)
    assert d.title.startswith("Hourly roll-up")
    assert d.instruction.startswith("# Greenhouse sensor roll-up\n")
    assert set(d.files) == {"/app/data/readings.csv", "/app/data/sensors.json"}
    assert d.files["/app/data/readings.csv"].startswith("sensor_id,timestamp,celsius\n")
    assert d.weights == {
        "test_hourly_file_exists": 1.0,
        "test_hourly_header": 1.0,
        "test_hourly_values": 3.0,
        "test_rejected_report": 2.0,
    }
    assert d.test_names == list(d.weights)


def test_fences_cdata_and_relative_paths_are_tolerated():
    answer = (
        "<task><title>T</title><instruction>```markdown\nDo it in /app/x.txt\n```</instruction>"
        '<files><file path="data/in.txt"><![CDATA[a < b && c\n]]></file></files>'
        "<tests>```python\ndef test_a():\n    assert '</tests>' != ''\n```</tests>"
        '<weights>{"test_a": 2}</weights></task>'
    )
    d = parse_answer(answer)
    assert d.instruction == "Do it in /app/x.txt\n"
    assert d.files == {"/app/data/in.txt": "a < b && c\n"}
    assert "'</tests>'" in d.tests  # a closing tag inside the code does not cut it short


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("no tags at all", "<instruction> is missing or empty"),
        (GOOD.replace("<weights>", "<weights>{oops"), "<weights> is not valid JSON"),
        (GOOD.replace('"test_hourly_header": 1', '"test_hourly_header": -1'), "must be positive"),
        (GOOD.replace("/app/data/sensors.json", "/tests/sensors.json"), "reserved for the harness"),
        (GOOD.replace("/app/data/sensors.json", "../etc/passwd"), "not a file path"),
        (GOOD.replace("def test_", "def check_"), "defines no test functions"),
    ],
)
def test_malformed_answers_name_every_problem(answer, problem):
    with pytest.raises(AnswerFormatError) as info:
        parse_answer(answer)
    assert any(problem in p for p in info.value.problems), info.value.problems


# -- gates ---------------------------------------------------------------------------------------


def test_the_leak_gate_finds_test_code_expected_values_and_reference_lines():
    d = parse_answer(LEAKY)
    problems = gate_leak(d)
    assert any("test code" in p for p in problems)
    assert any("12345.678" in p for p in problems)
    solution = "counts = len(open('/app/input/story.txt').read().split())\n"
    d.instruction += "\nUse counts = len(open('/app/input/story.txt').read().split())\n"
    assert any("reference solution" in p for p in gate_leak(d, solution))
    assert gate_leak(parse_answer(GOOD)) == []
    assert gate_leak(parse_answer(GOOD2)) == []


def test_the_files_gate_finds_inputs_the_instruction_mentions_but_nobody_provides():
    problems = gate_files(parse_answer(LEAKY))
    assert len(problems) == 1 and "/app/input/extra.txt" in problems[0]
    assert "/app/output/count.txt" not in problems[0]  # an output the tests check
    assert gate_files(parse_answer(GOOD)) == []


def test_the_static_gate_wants_enough_tests_and_weights_that_name_them(tmp_path):
    d = parse_answer(LEAKY)
    path = draft_to_task(d, name="leaky", image="ttgen/domain:general", metadata={}).save(
        tmp_path / "leaky"
    )
    problems = gate_static(d, path)
    assert any("at least 3" in p for p in problems)
    assert any("test_missing" in p and "do not exist" in p for p in problems)
    good = parse_answer(GOOD)
    path = draft_to_task(good, name="g", image="ttgen/domain:general", metadata={}).save(
        tmp_path / "g"
    )
    assert gate_static(good, path) == []


# -- the task folder and its reward -------------------------------------------------------------


def test_a_draft_becomes_a_harbor_task_with_hidden_tests_and_no_solution(tmp_path):
    d = parse_answer(GOOD2)
    task = draft_to_task(
        d, name="audit", image="ttgen/domain:security", metadata={"domain": "security"}
    )
    root = task.save(tmp_path / "audit")
    loaded = Task.load(root)
    assert loaded.instruction.startswith("# API token audit")
    assert loaded.config.metadata["title"] == d.title
    assert loaded.config.metadata["domain"] == "security"
    dockerfile = (root / "environment" / "Dockerfile").read_text()
    assert dockerfile.splitlines()[:3] == [
        "FROM ttgen/domain:security",
        "WORKDIR /app",
        "COPY files/ /app/",
    ]
    assert (root / "environment/files/registry/tokens.tsv").read_text().startswith("token_id\t")
    assert sorted(p.name for p in (root / "tests").iterdir()) == [
        "pytest.ini",
        "test.sh",
        "test_outputs.py",
        "ttgen_reward.py",
        "weights.json",
    ]
    assert not (root / "solution").exists()
    # The tests are not in the build context, so the agent cannot see them.
    assert not list((root / "environment").rglob("test_outputs.py"))
    # No key Harbor deprecates (allow_internet): the network is network_mode.
    env = tomllib.loads((root / "task.toml").read_text())["environment"]
    assert env == {"cpus": 1, "memory_mb": 2048, "network_mode": "public"}
    offline = draft_to_task(d, name="o", image="i", metadata={}, allow_internet=False)
    assert offline.config.to_dict()["environment"]["network_mode"] == "no-network"
    assert check_task(root).warnings == []


def _run_reward_plugin(tmp_path: Path, tests: str, weights: dict) -> dict:
    (tmp_path / "ttgen_reward.py").write_text(REWARD_PLUGIN)
    (tmp_path / "weights.json").write_text(json.dumps(weights))
    (tmp_path / "test_outputs.py").write_text(tests)
    reward = tmp_path / "reward.json"
    env = {"PYTHONPATH": str(tmp_path), "TTGEN_REWARD_FILE": str(reward), "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "ttgen_reward", "-p", "no:cacheprovider",
         str(tmp_path / "test_outputs.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return json.loads(reward.read_text())


def test_the_reward_is_the_weighted_fraction_of_tests_passed(tmp_path):
    tests = (
        "import pytest\n"
        "def test_a():\n    assert True\n"
        "def test_b():\n    assert False\n"
        "@pytest.mark.parametrize('x', [1, 2, 3, 4])\n"
        "def test_c(x):\n    assert x <= 3\n"
    )
    got = _run_reward_plugin(tmp_path, tests, {"test_a": 1, "test_b": 3, "test_c": 4})
    # test_a 1 + test_b 0 + test_c 4 x 3/4 = 4 of 8
    assert got == {"reward": 0.5, "tests_passed": 1, "tests_total": 3}


def test_a_test_module_that_cannot_import_scores_zero(tmp_path):
    tests = (
        "import json\nDATA = json.load(open('/nonexistent/out.json'))\ndef test_a():\n    pass\n"
    )
    got = _run_reward_plugin(tmp_path, tests, {"test_a": 1})
    assert got["reward"] == 0 and got["tests_total"] == 1


# -- prompts -------------------------------------------------------------------------------------


def test_skill_prompts_carry_the_domain_module_skills_dockerfile_and_difficulty():
    taxonomy = load_taxonomy()
    domain = taxonomy.get("data_science")
    items = skill_items([domain], n=3, difficulty="hard", seed=7, model="m")
    again = skill_items([domain], n=2, difficulty="hard", seed=7, model="m")
    assert [i.user for i in items[:2]] == [i.user for i in again]  # reproducible per index
    item = items[0]
    assert item.id == "data_science_task_0000"
    assert item.image == "ttgen/domain:data_science"
    assert domain.module_text() in item.system
    for heading in ("# Role", "# Domain Context", "# Universal Task Requirements",
                    "# Output Format", "# Critical Rules"):  # fmt: skip
        assert heading in item.system
    assert "<domain>Data Science</domain>" in item.user
    skills = item.info["skills"]
    assert 3 <= len(skills) <= 5
    for s in skills:
        assert f"[{s['type']}] {s['skill']}" in item.user
    assert "<DOCKERFILE_CONTENT>\n# " in item.user and "ARG BASE_IMAGE" in item.user
    assert "<difficulty>hard: " in item.user
    assert item.metadata["skills"] == [s["id"] for s in skills]
    assert "{{" not in item.system + item.user


def test_seed_prompts_give_the_reference_solution_to_the_generator_only():
    items = seed_items(
        [
            Seed(
                problem="Integrate the ODE y' = -2y.",
                origin="s.jsonl:1",
                domain="physics",
                reference_solution="import math\nprint(math.exp(-2))",
                id="ode-1",
            ),
            Seed(problem="Find the shortest path.", origin="s.jsonl:2", domain="data_querying"),
        ],
        taxonomy=load_taxonomy(),
    )
    first, second = items
    assert first.id == "seed_ode_1" and second.id == "seed_0001"
    assert first.image == "ttgen/domain:scientific_computing"  # "physics" is no task domain
    assert second.image == "ttgen/domain:data_querying"
    assert "<reference_solution>\nimport math" in first.user
    assert "never sees it" in first.user
    assert "<reference_solution>" not in second.user
    assert first.reference_solution.startswith("import math")
    assert "task adapter" in first.system


# -- the generation loop ----------------------------------------------------------------------


def _items(n: int = 2, domain: str = "data_processing"):
    return skill_items([load_taxonomy().get(domain)], n=n, difficulty="medium", seed=1, model="m")


async def _synth(tmp_path: Path, server: ScriptedLLMServer, items, **options):
    config = LLMConfig(model="m", base_url=server.base_url, max_retries=0,
                       price_input_per_mtok=1.0, price_output_per_mtok=2.0)  # fmt: skip
    synth = Synthesizer(
        config, SynthOptions(out=tmp_path / "out", concurrency=2, **options), GateRunner(HOST_GATES)
    )
    return await synth.run(items)


async def test_tasks_are_written_with_a_generation_record_and_a_cost_summary(tmp_path):
    async with ScriptedLLMServer([GOOD, GOOD2]) as server:
        summary = await _synth(tmp_path, server, _items(2))
    out = tmp_path / "out"
    assert summary["written"] == 2 and summary["dropped"] == 0 and summary["errors"] == 0
    assert summary["cost_usd"] > 0 and summary["usage"]["calls"] == 2
    for task_id in ("data_processing_task_0000", "data_processing_task_0001"):
        task = Task.load(out / task_id)
        meta = task.config.metadata
        assert meta["source"] == "skill_synth" and meta["domain"] == "data_processing"
        assert meta["difficulty"] == "medium" and 3 <= len(meta["skills"]) <= 5
        record = json.loads((out / "generation" / f"{task_id}.json").read_text())
        assert record["status"] == "written" and record["model"] == "m"
        attempt = record["attempts"][0]
        assert attempt["messages"][0]["role"] == "system"
        assert attempt["answer"] in (GOOD, GOOD2)
        assert attempt["usage"]["completion_tokens"] > 0 and attempt["cost_usd"] > 0
        assert [g["gate"] for g in attempt["gates"]] == list(HOST_GATES)
    lines = (out / "synth.jsonl").read_text().splitlines()
    assert [json.loads(x)["status"] for x in lines] == ["written", "written"]
    assert not (out / "generation" / ".staging").exists()


async def test_a_malformed_answer_is_retried_once_with_the_problems(tmp_path):
    async with ScriptedLLMServer(["Sure! Here is a task about sensors.", GOOD]) as server:
        summary = await _synth(tmp_path, server, _items(1))
        retry = server.requests[1].messages
    assert summary["written"] == 1 and summary["format_retries"] == 1
    assert retry[-2] == {"role": "assistant", "content": "Sure! Here is a task about sensors."}
    assert "<instruction> is missing or empty" in retry[-1]["content"]
    record = read_records(tmp_path / "out")["data_processing_task_0000"]
    assert [a["stage"] for a in record["attempts"]] == ["generate", "format_retry"]
    assert record["attempts"][0]["parse_problems"]


async def test_malformed_twice_is_dropped_with_the_reason(tmp_path):
    async with ScriptedLLMServer(["nothing useful", "<task><title>x</title></task>"]) as server:
        summary = await _synth(tmp_path, server, _items(1))
    record = read_records(tmp_path / "out")["data_processing_task_0000"]
    assert record["status"] == "dropped" and record["dropped_by"] == "format"
    assert "malformed answer after a retry" in record["reason"]
    assert summary["dropped_by"] == {"format": 1}
    assert not (tmp_path / "out" / "data_processing_task_0000").exists()


async def test_a_task_failing_the_gates_gets_one_repair_round(tmp_path):
    async with ScriptedLLMServer([LEAKY, GOOD]) as server:
        summary = await _synth(tmp_path, server, _items(1))
        repair = server.requests[1].messages[-1]["content"]
    assert summary["written"] == 1 and summary["repaired"] == 1
    assert summary["gate_failures"] == {"static": 1, "leak": 1, "files": 1}
    assert "[leak]" in repair and "12345.678" in repair and "[files]" in repair
    assert "reply with the complete corrected task" in repair


async def test_a_task_failing_the_gates_after_the_repair_is_dropped(tmp_path):
    async with ScriptedLLMServer([LEAKY, LEAKY]) as server:
        summary = await _synth(tmp_path, server, _items(1))
    record = read_records(tmp_path / "out")["data_processing_task_0000"]
    assert record["status"] == "dropped" and record["dropped_by"] == "static"
    assert record["reason"].startswith("gates failed after a repair round: static:")
    assert record["draft"]["title"] == "Count words in a text file"  # kept for inspection
    assert summary["dropped_by"] == {"static": 1}
    assert not (tmp_path / "out" / "data_processing_task_0000").exists()


async def test_a_near_duplicate_is_regenerated_and_told_what_to_avoid(tmp_path):
    near_copy = GOOD.replace("greenhouse", "glasshouse")
    async with ScriptedLLMServer([GOOD, near_copy, GOOD2]) as server:
        config = LLMConfig(model="m", base_url=server.base_url, max_retries=0)
        synth = Synthesizer(
            config, SynthOptions(out=tmp_path / "out", concurrency=1), GateRunner(HOST_GATES)
        )
        summary = await synth.run(_items(2))
        regen = server.requests[2].messages
    assert summary["written"] == 2 and summary["novelty_regenerations"] == 1
    assert len(regen) == 2  # a fresh conversation
    assert "Hourly roll-up of greenhouse sensor readings" in regen[1]["content"]
    assert "must be clearly different" in regen[1]["content"]
    record = read_records(tmp_path / "out")["data_processing_task_0001"]
    assert record["attempts"][0]["novelty"][0]["task"] == "data_processing_task_0000"
    assert record["attempts"][0]["novelty"][0]["jaccard"] > 0.5


async def test_near_duplicates_of_earlier_runs_count_and_give_up_after_the_retries(tmp_path):
    async with ScriptedLLMServer([GOOD]) as server:
        await _synth(tmp_path, server, _items(1))
    async with ScriptedLLMServer([GOOD, GOOD, GOOD]) as server:
        summary = await _synth(tmp_path, server, _items(2), novelty_retries=2)
    record = read_records(tmp_path / "out")["data_processing_task_0001"]
    assert record["status"] == "dropped" and record["dropped_by"] == "novelty"
    assert "near-duplicate of data_processing_task_0000" in record["reason"]
    assert summary["dropped_by"] == {"novelty": 1}


async def test_endpoint_failures_are_errors_and_the_next_run_finishes_the_rest(tmp_path):
    async with ScriptedLLMServer([GOOD, Error(500, "overloaded")]) as server:
        first = await _synth(tmp_path, server, _items(2))
    assert first["written"] == 1 and first["errors"] == 1
    (errored,) = [r for r in read_records(tmp_path / "out").values() if r["status"] == "error"]
    assert "overloaded" in errored["reason"]
    async with ScriptedLLMServer([GOOD2]) as server:
        second = await _synth(tmp_path, server, _items(2))
        assert len(server.requests) == 1  # the written task is not generated again
    assert second["written"] == 2 and second["errors"] == 0
    assert second["n_generated_this_run"] == 1
    async with ScriptedLLMServer([]) as server:
        third = await _synth(tmp_path, server, _items(2))
        assert server.requests == []
    assert third["written"] == 2


def test_prompt_templates_have_no_unfilled_placeholders():
    text = prompts.skill_system_prompt("MODULE") + prompts.seed_system_prompt()
    text += prompts.repair_message(["a"]) + prompts.format_retry_message(["b"])
    assert "{{" not in text and "MODULE" in text
    with pytest.raises(KeyError):
        prompts.render("skill_user", domain_title="x")
