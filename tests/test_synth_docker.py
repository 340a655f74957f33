"""Synthesis with the Docker gates (real engine, the general domain image): pytest collection in
the task's image, a do-nothing agent scoring 0, and the generated verifier's weighted reward for
full and partial solutions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ttgen.formats.trial import AgentSpec
from ttgen.llm import LLMConfig
from ttgen.rollout.trial import Trial, TrialSpec
from ttgen.rollout.validate import validate_tasks
from ttgen.settings import Settings
from ttgen.sources.synth import prompts
from ttgen.sources.synth.engine import Synthesizer, SynthOptions, WorkItem, read_records
from ttgen.sources.synth.gates import GateRunner
from ttgen.task import Task
from ttgen.testing import ScriptedLLMServer

pytestmark = pytest.mark.docker

DATA = Path(__file__).parent / "data" / "synth"
GOOD = (DATA / "sensor_rollup.xml").read_text()
GOOD2 = (DATA / "token_audit.xml").read_text()
SOLVE = (DATA / "sensor_rollup_solve.sh").read_text()

TRIVIAL = GOOD.replace("greenhouse", "glasshouse").replace(
    'def test_hourly_file_exists():\n    assert (OUT / "hourly.csv").is_file()',
    'def test_hourly_file_exists():\n    assert Path("/app/data/readings.csv").is_file()',
)
BAD_IMPORT = GOOD2.replace("import json\n", "import json\nimport polars\n", 1).replace(
    "API token audit", "API token audit with polars"
)


@pytest.fixture
def settings(ca_settings: Settings) -> Settings:
    return ca_settings  # the general domain image installs from PyPI


def _item(i: int) -> WorkItem:
    return WorkItem(
        id=f"general_task_{i:04d}",
        kind="skills",
        system=prompts.skill_system_prompt("## Domain: General"),
        user=f"task {i}",
        novelty_key="general",
        image="ttgen/domain:general",
        metadata={"source": "skill_synth", "domain": "general"},
    )


async def test_docker_gates_check_collection_and_a_do_nothing_agent(tmp_path, backend, job_name):
    out = tmp_path / "out"
    script = [GOOD, TRIVIAL, GOOD2, BAD_IMPORT, BAD_IMPORT]
    async with ScriptedLLMServer(script) as server:
        config = LLMConfig(model="m", base_url=server.base_url, max_retries=0)
        runner = GateRunner(
            ("static", "leak", "files", "collect", "validate"), backend, job=job_name
        )
        # Near-copies on purpose here: only exact duplicates count as such.
        options = SynthOptions(out=out, concurrency=1, novelty_threshold=1.0)
        synth = Synthesizer(config, options, runner)
        summary = await synth.run([_item(0), _item(1), _item(2)])
        repair_trivial = server.requests[2].messages[-1]["content"]
        repair_import = server.requests[4].messages[-1]["content"]
    records = read_records(out)
    assert [records[f"general_task_000{i}"]["status"] for i in range(3)] == [
        "written",
        "written",
        "dropped",
    ]
    assert "[validate] an agent that does nothing already scores 0.142857" in repair_trivial
    assert "[collect] pytest cannot collect the tests" in repair_import
    assert "polars" in repair_import
    assert summary["gate_failures"] == {"validate": 1, "collect": 2}
    assert summary["dropped_by"] == {"collect": 1}
    gates = records["general_task_0000"]["attempts"][0]["gates"]
    assert [(g["gate"], g["ok"]) for g in gates] == [
        ("static", True),
        ("leak", True),
        ("files", True),
        ("collect", True),
        ("validate", True),
    ]

    # The written task with a correct solution is valid (oracle 1, nop 0) ...
    solved = tmp_path / "solved"
    shutil.copytree(out / "general_task_0000", solved)
    (solved / "solution").mkdir()
    (solved / "solution" / "solve.sh").write_text(SOLVE)
    verdicts = await validate_tasks([solved], tmp_path / "val", backend=backend)
    assert verdicts[0].verdict == "valid", verdicts[0].reasons
    assert verdicts[0].rewards == {"nop": 0.0, "oracle": 1.0}

    # ... and half the work earns the weights of the tests it passes: (1 + 1 + 3) / 7.
    partial = tmp_path / "partial"
    shutil.copytree(solved, partial)
    (partial / "solution" / "solve.sh").write_text(
        SOLVE.replace('json.dump({"broken_rows"', '0 and json.dump({"broken_rows"')
    )
    spec = TrialSpec(task=Task.load(partial), trial_name="partial", agent=AgentSpec(name="oracle"))
    result = await Trial(spec, backend, tmp_path / "trial").run()
    assert result.reward == pytest.approx(5 / 7, abs=1e-5)
    reward = json.loads((tmp_path / "trial" / "verifier" / "reward.json").read_text())
    assert reward["tests_passed"] == 3 and reward["tests_total"] == 4
