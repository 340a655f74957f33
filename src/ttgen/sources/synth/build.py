"""A parsed generator answer (`TaskDraft`) → a Harbor task directory.

    <task>/
      instruction.md
      task.toml                 [metadata]: source, domain, skills, difficulty, generator, ...
      environment/
        Dockerfile              FROM the domain image; input files copied in; optional setup
        files/…                 input files under /app   (COPY files/ /app/)
        rootfs/…                input files elsewhere    (COPY rootfs/ /)
        setup.sh                optional build-time script, removed from the final image
      tests/
        test.sh                 runs pytest, writes the reward
        test_outputs.py         the generated tests
        weights.json            test function → weight (partial credit)
        ttgen_reward.py         pytest plugin: reward = weighted fraction of passed tests
        pytest.ini              so that no ini file planted by the agent is used
      solution/                 (none: generated tasks have no reference solution, as in the paper)

The reward is ``sum(weight x fraction of that test's cases passed) / sum(weights)`` over every
test named in weights.json or collected, written to /logs/verifier/reward.json as
``{"reward": r, "tests_passed": p, "tests_total": n}``. A test module that fails to import scores
0. When pytest itself is missing from the image, test.sh writes no reward, so the trial is
recorded as a broken verifier rather than as the agent's failure.
"""

from __future__ import annotations

import json
from typing import Any

from ttgen.sources.synth.answer import TaskDraft
from ttgen.task import AgentConfig, EnvironmentConfig, Task, TaskConfig, VerifierConfig

APP = "/app"

TEST_SH = """\
#!/bin/bash
# Verifier of a ttgen-generated task: runs the pytest tests in /tests/test_outputs.py and writes
# the weighted fraction of passed tests (weights in /tests/weights.json) to
# /logs/verifier/reward.json.
mkdir -p /logs/verifier
if ! python3 -c "import pytest" 2>/dev/null; then
    echo "ttgen verifier: pytest is not installed in this image; no reward written" >&2
    exit 1
fi
cd /app 2>/dev/null || cd /
PYTHONPATH=/tests${PYTHONPATH:+:$PYTHONPATH} python3 -m pytest -c /tests/pytest.ini \\
    --rootdir=/tests --confcutdir=/tests -p ttgen_reward -p no:cacheprovider -rA \\
    /tests/test_outputs.py
status=$?
if [ ! -s /logs/verifier/reward.json ]; then
    echo "ttgen verifier: pytest ended with status $status before writing a reward; scoring 0"
    echo '{"reward": 0}' > /logs/verifier/reward.json
fi
exit 0
"""

PYTEST_INI = """\
[pytest]
# ttgen: the verifier's own (empty) settings, so that no ini file elsewhere in the container
# (e.g. one the agent wrote into /app) changes how the tests run.
"""

REWARD_PLUGIN = '''\
"""pytest plugin of ttgen-generated tasks: the reward is the weighted fraction of tests passed.

Weights come from weights.json beside this file (test function name -> weight, default 1).
A parametrized test's weight is split evenly over its cases. Tests named in weights.json that
never ran (e.g. the module failed to import) count as failed.
"""

import json
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS_FILE = os.environ.get("TTGEN_WEIGHTS_FILE", os.path.join(_HERE, "weights.json"))
REWARD_FILE = os.environ.get("TTGEN_REWARD_FILE", "/logs/verifier/reward.json")

_outcomes = {}


def pytest_runtest_logreport(report):
    if report.failed:
        _outcomes[report.nodeid] = False
    elif report.when == "call":
        _outcomes.setdefault(report.nodeid, bool(report.passed))
    elif report.skipped:
        _outcomes.setdefault(report.nodeid, False)


def _name(nodeid):
    return nodeid.split("::")[-1].split("[")[0]


def pytest_sessionfinish(session, exitstatus):
    try:
        with open(WEIGHTS_FILE, encoding="utf-8") as f:
            weights = {str(k): float(v) for k, v in json.load(f).items()}
    except (OSError, ValueError, AttributeError):
        weights = {}
    cases = {}
    for nodeid, ok in _outcomes.items():
        cases.setdefault(_name(nodeid), []).append(ok)
    names = sorted(set(weights) | set(cases))
    total = sum(weights.get(n, 1.0) for n in names)
    earned = sum(weights.get(n, 1.0) * sum(r) / len(r) for n, r in cases.items() if r)
    reward = earned / total if total > 0 else 0.0
    passed = sum(1 for n in names if cases.get(n) and all(cases[n]))
    os.makedirs(os.path.dirname(REWARD_FILE), exist_ok=True)
    with open(REWARD_FILE, "w", encoding="utf-8") as f:
        json.dump(
            {"reward": round(reward, 6), "tests_passed": passed, "tests_total": len(names)}, f
        )
    print()
    print("ttgen reward: %.4f (%d of %d tests passed)" % (reward, passed, len(names)))
    for n in names:
        r = cases.get(n)
        state = "not run" if not r else ("passed" if all(r) else "%d/%d cases" % (sum(r), len(r)))
        print("  %-50s weight %-6g %s" % (n, weights.get(n, 1.0), state))
'''


def _dockerfile(image: str, has_app: bool, has_root: bool, has_setup: bool) -> str:
    lines = [f"FROM {image}", f"WORKDIR {APP}"]
    if has_app:
        lines.append(f"COPY files/ {APP}/")
    if has_root:
        lines.append("COPY rootfs/ /")
    if has_setup:
        lines.append("COPY setup.sh /tmp/ttgen-setup.sh")
        lines.append(f"RUN cd {APP} && bash -e /tmp/ttgen-setup.sh && rm -f /tmp/ttgen-setup.sh")
    return "\n".join(lines) + "\n"


def draft_to_task(
    draft: TaskDraft,
    *,
    name: str,
    image: str,
    metadata: dict[str, Any],
    agent_timeout_sec: float = 900.0,
    verifier_timeout_sec: float = 900.0,
    cpus: float = 1,
    memory_mb: int = 2048,
    allow_internet: bool = True,
) -> Task:
    """The Harbor task for `draft` (in memory; `Task.save(dest)` writes it atomically)."""
    files: dict[str, bytes | str] = {}
    has_app = has_root = False
    for path, content in sorted(draft.files.items()):
        if path.startswith(APP + "/"):
            files[f"environment/files/{path[len(APP) + 1 :]}"] = content
            has_app = True
        else:
            files[f"environment/rootfs/{path.lstrip('/')}"] = content
            has_root = True
    if draft.setup.strip():
        files["environment/setup.sh"] = draft.setup
    files["environment/Dockerfile"] = _dockerfile(
        image, has_app, has_root, bool(draft.setup.strip())
    )
    files["tests/test.sh"] = TEST_SH
    files["tests/test_outputs.py"] = draft.tests
    files["tests/weights.json"] = json.dumps(draft.weights, indent=2) + "\n"
    files["tests/ttgen_reward.py"] = REWARD_PLUGIN
    files["tests/pytest.ini"] = PYTEST_INI
    config = TaskConfig(
        metadata={"title": draft.title, **metadata},
        agent=AgentConfig(timeout_sec=agent_timeout_sec),
        verifier=VerifierConfig(timeout_sec=verifier_timeout_sec),
        environment=EnvironmentConfig(
            cpus=cpus,
            memory_mb=memory_mb,
            # Harbor deprecates allow_internet: the file says network_mode
            network_mode="public" if allow_internet else "no-network",
        ),
    )
    instruction = (
        draft.instruction if draft.instruction.endswith("\n") else draft.instruction + "\n"
    )
    return Task(name=name, instruction=instruction, config=config, files=files)
