"""Terminal-Bench 1 → Harbor conversion (`ttgen tasks import-tb1`), on TB1 tasks built here."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ttgen.check import check_task
from ttgen.cli import app
from ttgen.errors import TaskError
from ttgen.sources.tb1 import convert_tb1_task, import_tb1_tasks
from ttgen.task import Task

TASK_YAML = """\
instruction: |-
  Write the word hello to /app/out.txt.

  Use any tool you like.
author_name: Ann Example
author_email: ann@example.com
difficulty: medium
category: file-operations
tags: [files, shell]
parser_name: pytest
max_agent_timeout_sec: 900
max_test_timeout_sec: 120.5
run_tests_in_same_shell: false
expert_time_estimate_min: 5
junior_time_estimate_min: 15
estimated_duration_sec: null
"""

COMPOSE = """\
services:
  client:
    build:
      dockerfile: Dockerfile
    image: ${T_BENCH_TASK_DOCKER_CLIENT_IMAGE_NAME}
    container_name: ${T_BENCH_TASK_DOCKER_CLIENT_CONTAINER_NAME}
    command: [ "sh", "-c", "sleep infinity" ]
    environment:
      - TEST_DIR=${T_BENCH_TEST_DIR}
      - GREETING=hello world
      - MODE=fast
    working_dir: /srv/work
    expose: ["8080", 9090]
    volumes:
      - ${T_BENCH_TASK_LOGS_PATH}:${T_BENCH_CONTAINER_LOGS_PATH}
      - ${T_BENCH_TASK_AGENT_LOGS_PATH}:${T_BENCH_CONTAINER_AGENT_LOGS_PATH}
"""

DOCKERFILE = "FROM ubuntu:24.04\nWORKDIR /app\nCOPY data/ /app/data/\n"

# Behaves by $OUTCOME so one converted script can pass, fail, exit early and exec.
RUN_TESTS = """\
#!/bin/bash
set -e
test -f $TEST_DIR/test_outputs.py
test -d ${TEST_DIR}
echo "untouched: $TEST_DIR_EXTRA"
if [ "$OUTCOME" = exit ]; then exit 3; fi
if [ "$OUTCOME" = exec ]; then exec true; fi
[ "$OUTCOME" = pass ]
echo all tests passed
"""

SOLUTION = "#!/bin/bash\necho hello > /app/out.txt\n"
TEST_OUTPUTS = "def test_out():\n    assert open('/app/out.txt').read().strip() == 'hello'\n"


def make_tb1(
    parent: Path,
    name: str = "hello-file",
    *,
    task_yaml: str | None = TASK_YAML,
    compose: str | None = COMPOSE,
    dockerfile: str | None = DOCKERFILE,
    run_tests: str | None = RUN_TESTS,
    solution_sh: str | None = SOLUTION,
    solution_yaml: str | None = None,
    tests: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
) -> Path:
    """Write a TB1 task folder; every part has a working default."""
    root = parent / name
    root.mkdir(parents=True)
    files = {
        "task.yaml": task_yaml,
        "docker-compose.yaml": compose,
        "Dockerfile": dockerfile,
        "run-tests.sh": run_tests,
        "solution.sh": solution_sh,
        "solution.yaml": solution_yaml,
        "data/input.txt": "some input\n",
        "data/tool": "#!/bin/sh\necho tool\n",
        **{f"tests/{k}": v for k, v in (tests or {"test_outputs.py": TEST_OUTPUTS}).items()},
        **(extra or {}),
    }
    for rel, content in files.items():
        if content is None:
            continue
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    (root / "data/tool").chmod(0o755)
    return root


def only(items, status: str = "converted"):
    assert len(items) == 1, items
    assert items[0].status == status, items
    return items[0]


def run_verifier(task: Path, work: Path, outcome: str) -> tuple[str, subprocess.CompletedProcess]:
    """Run the converted tests/test.sh with /tests and /logs/verifier moved under `work`."""
    tests = work / "tests"
    logs = work / "logs" / "verifier"
    shutil.copytree(task / "tests", tests)
    mapping = {"/tests": str(tests), "/logs/verifier": str(logs)}
    for script in tests.glob("*.sh"):
        text = script.read_text()
        script.write_text(re.sub(r"/logs/verifier|/tests", lambda m: mapping[m.group()], text))
    env = {"PATH": os.environ["PATH"], "OUTCOME": outcome}
    proc = subprocess.run(
        ["bash", str(tests / "test.sh")], cwd=work, env=env, capture_output=True, text=True
    )
    return (logs / "reward.txt").read_text().strip(), proc


# -- a typical task --------------------------------------------------------------------------


def test_typical_task_converts_to_a_valid_harbor_task(tmp_path: Path) -> None:
    src = make_tb1(tmp_path / "tb1")
    item = only(import_tb1_tasks(src, tmp_path / "out"))
    out = tmp_path / "out" / "hello-file"
    assert item.name == "hello-file"
    assert item.detail == str(out)

    result = check_task(out)
    assert result.valid, result.problems
    assert result.warnings == []

    task = Task.load(out)
    assert task.name == "hello-file"
    assert task.instruction == "Write the word hello to /app/out.txt.\n\nUse any tool you like.\n"
    assert task.config.schema_version == "1.1"
    assert task.config.agent.timeout_sec == 900.0
    assert task.config.verifier.timeout_sec == 120.5
    assert task.config.metadata == {
        "author_name": "Ann Example",
        "author_email": "ann@example.com",
        "difficulty": "medium",
        "category": "file-operations",
        "tags": ["files", "shell"],
        "parser_name": "pytest",
        "run_tests_in_same_shell": False,
        "expert_time_estimate_min": 5,
        "junior_time_estimate_min": 15,
    }
    raw = tomllib.loads((out / "task.toml").read_text())
    assert raw["schema_version"] == "1.1"
    assert "instruction" not in raw["metadata"]
    assert not set(raw["metadata"]) & {"max_agent_timeout_sec", "max_test_timeout_sec"}

    dockerfile = (out / "environment" / "Dockerfile").read_text().splitlines()
    assert dockerfile[:3] == DOCKERFILE.splitlines()
    assert "ENV TEST_DIR=/tests" in dockerfile
    assert 'ENV GREETING="hello world"' in dockerfile
    assert "ENV MODE=fast" in dockerfile
    assert dockerfile.index("WORKDIR /srv/work") > dockerfile.index("WORKDIR /app")
    assert "EXPOSE 8080" in dockerfile and "EXPOSE 9090" in dockerfile
    text = "\n".join(dockerfile)
    assert "T_BENCH" not in text and "sleep infinity" not in text

    # The build context goes to environment/, without TB1's harness files; modes are kept.
    env = out / "environment"
    assert (env / "data" / "input.txt").read_text() == "some input\n"
    assert os.access(env / "data" / "tool", os.X_OK)
    assert sorted(p.name for p in env.iterdir()) == ["Dockerfile", "data"]

    solve = out / "solution" / "solve.sh"
    assert solve.read_text() == SOLUTION
    assert os.access(solve, os.X_OK)
    assert (out / "tests" / "test_outputs.py").read_text() == TEST_OUTPUTS
    assert os.access(out / "tests" / "test.sh", os.X_OK)


def test_test_script_has_no_test_dir_left(tmp_path: Path) -> None:
    only(import_tb1_tasks(make_tb1(tmp_path / "tb1"), tmp_path / "out"))
    tests = tmp_path / "out" / "hello-file" / "tests"
    for script in ("test.sh", "run-tests.sh"):
        text = (tests / script).read_text()
        assert "$TEST_DIR " not in text and "${TEST_DIR}" not in text and "$TEST_DIR/" not in text
    original = (tests / "run-tests.sh").read_text()
    assert "test -f /tests/test_outputs.py" in original
    assert "test -d /tests\n" in original
    assert "$TEST_DIR_EXTRA" in original  # a longer name is not TEST_DIR
    assert "/logs/verifier/reward.txt" in (tests / "test.sh").read_text()


@pytest.mark.parametrize(
    ("outcome", "reward"),
    [("pass", "1"), ("fail", "0"), ("exit", "0"), ("exec", "1")],
    ids=["passes", "fails-under-set-e", "exits-early", "execs"],
)
def test_verifier_writes_reward_from_exit_code(tmp_path: Path, outcome: str, reward: str) -> None:
    only(import_tb1_tasks(make_tb1(tmp_path / "tb1"), tmp_path / "out"))
    work = tmp_path / "run"
    work.mkdir()
    got, proc = run_verifier(tmp_path / "out" / "hello-file", work, outcome)
    assert got == reward, proc.stdout + proc.stderr
    assert (proc.returncode == 0) == (reward == "1")
    if outcome == "pass":
        assert "all tests passed" in proc.stdout


def test_timeouts_default_to_tb1_values(tmp_path: Path) -> None:
    src = make_tb1(tmp_path / "tb1", task_yaml="instruction: Do it.\ndifficulty: easy\n")
    only(import_tb1_tasks(src, tmp_path / "out"))
    raw = tomllib.loads((tmp_path / "out" / "hello-file" / "task.toml").read_text())
    assert raw["agent"]["timeout_sec"] == 360.0
    assert raw["verifier"]["timeout_sec"] == 60.0
    assert raw["metadata"] == {"difficulty": "easy"}
    assert (tmp_path / "out" / "hello-file" / "instruction.md").read_text() == "Do it.\n"


def test_compose_entrypoint_platform_user_and_mapping_environment(tmp_path: Path) -> None:
    compose = """\
services:
  client:
    build: .
    platform: linux/amd64
    user: app
    entrypoint: /usr/local/bin/start --quiet
    environment:
      TEST_DIR: ${T_BENCH_TEST_DIR}
      PRICE: "$$5"
      EMPTY: ""
      FROM_HOST:
    privileged: true
"""
    dockerfile = "# syntax=docker/dockerfile:1\nFROM python:3.13-slim AS base\nRUN true\n"
    src = make_tb1(tmp_path / "tb1", compose=compose, dockerfile=dockerfile)
    item = only(import_tb1_tasks(src, tmp_path / "out"))
    assert "privileged" in item.detail  # what the conversion dropped is reported
    lines = (
        (tmp_path / "out" / "hello-file" / "environment" / "Dockerfile").read_text().splitlines()
    )
    assert lines[0] == "# syntax=docker/dockerfile:1"
    assert lines[1] == "FROM --platform=linux/amd64 python:3.13-slim AS base"
    assert 'ENV PRICE="\\$5"' in lines
    assert 'ENV EMPTY=""' in lines
    assert "USER app" in lines
    assert 'ENTRYPOINT ["/usr/local/bin/start", "--quiet"]' in lines
    assert not any("FROM_HOST" in line for line in lines)
    assert sum(line.startswith("ENV TEST_DIR") for line in lines) == 1


def test_build_context_subfolder_and_copied_tests(tmp_path: Path) -> None:
    compose = "services:\n  client:\n    build:\n      context: docker\n      dockerfile: Dockerfile.client\n"
    src = make_tb1(
        tmp_path / "tb1",
        compose=compose,
        dockerfile=None,
        extra={
            "docker/Dockerfile.client": "FROM ubuntu:24.04\nCOPY app.py /app/\n",
            "docker/app.py": "print('hi')\n",
        },
    )
    only(import_tb1_tasks(src, tmp_path / "out"))
    env = tmp_path / "out" / "hello-file" / "environment"
    assert (env / "app.py").read_text() == "print('hi')\n"
    assert (env / "Dockerfile").read_text().startswith("FROM ubuntu:24.04\nCOPY app.py /app/\n")
    assert not (env / "data").exists()  # outside the build context

    # A Dockerfile that COPYs tests/ from the task dir gets them in its context.
    src2 = make_tb1(tmp_path / "tb1b", dockerfile="FROM ubuntu:24.04\nCOPY ./tests/ /opt/tests/\n")
    only(import_tb1_tasks(src2, tmp_path / "out2"))
    env2 = tmp_path / "out2" / "hello-file" / "environment"
    assert (env2 / "tests" / "test_outputs.py").is_file()
    assert not (env2 / "solution.sh").exists()


# -- multi-container tasks ------------------------------------------------------------------


def test_multi_service_compose_becomes_harbor_compose(tmp_path: Path) -> None:
    compose = """\
version: "3.8"
services:
  client:
    build:
      dockerfile: Dockerfile
    image: ${T_BENCH_TASK_DOCKER_CLIENT_IMAGE_NAME}
    container_name: ${T_BENCH_TASK_DOCKER_CLIENT_CONTAINER_NAME}
    command: ["sh", "-c", "sleep infinity"]
    environment:
      - TEST_DIR=${T_BENCH_TEST_DIR}
      - DB_HOST=db
    working_dir: /app
    depends_on: [db]
  db:
    image: postgres:16
    container_name: ${T_BENCH_TASK_DOCKER_NAME_PREFIX}__db
    environment:
      POSTGRES_PASSWORD: secret
  probe:
    build: ./probe
    depends_on: [client]
"""
    src = make_tb1(
        tmp_path / "tb1",
        compose=compose,
        extra={"probe/Dockerfile": "FROM alpine:3.20\n"},
    )
    only(import_tb1_tasks(src, tmp_path / "out"))
    out = tmp_path / "out" / "hello-file"
    assert check_task(out).valid, check_task(out).problems

    data = yaml.safe_load((out / "environment" / "docker-compose.yaml").read_text())
    assert "version" not in data
    assert list(data["services"]) == ["main", "db", "probe"]
    main = data["services"]["main"]
    assert main["build"] == {"context": "${CONTEXT_DIR}"}
    assert main["image"] == "${MAIN_IMAGE_NAME}"
    assert main["command"] == ["sh", "-c", "sleep infinity"]
    assert main["deploy"]["resources"]["limits"] == {"cpus": "${CPUS}", "memory": "${MEMORY}"}
    assert main["depends_on"] == ["db"]
    db = data["services"]["db"]
    assert db["container_name"] == "hb__db"
    assert db["environment"] == {"POSTGRES_PASSWORD": "secret"}
    assert data["services"]["probe"] == {"build": "./probe", "depends_on": ["main"]}
    assert (out / "environment" / "probe" / "Dockerfile").is_file()

    dockerfile = (out / "environment" / "Dockerfile").read_text().splitlines()
    assert "ENV TEST_DIR=/tests" in dockerfile and "ENV DB_HOST=db" in dockerfile


def test_single_service_writes_no_compose(tmp_path: Path) -> None:
    only(import_tb1_tasks(make_tb1(tmp_path / "tb1"), tmp_path / "out"))
    env = tmp_path / "out" / "hello-file" / "environment"
    assert not (env / "docker-compose.yaml").exists()
    assert not (env / "docker-compose.yml").exists()


# -- bad tasks ------------------------------------------------------------------------------


def test_solution_yaml_fails_and_the_batch_goes_on(tmp_path: Path) -> None:
    src = tmp_path / "tb1"
    make_tb1(src, "a-good")
    make_tb1(src, "b-keystrokes", solution_sh=None, solution_yaml="- command: echo hi\n")
    make_tb1(src / "nested", "c-good")
    items = import_tb1_tasks(src, tmp_path / "out")
    assert [(i.name, i.status) for i in items] == [
        ("a-good", "converted"),
        ("b-keystrokes", "failed"),
        ("c-good", "converted"),
    ]
    assert items[1].detail.startswith("solution.yaml:")
    assert "not supported" in items[1].detail
    assert "\n" not in items[1].detail
    assert not (tmp_path / "out" / "b-keystrokes").exists()
    assert check_task(tmp_path / "out" / "c-good").valid
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a-good", "c-good"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"task_yaml": "instruction: Do it.\ntags: [a, b\n"},
            r"^task\.yaml: YAML syntax error at line \d+",
        ),
        (
            {"compose": "services:\n  client:\n    build: [\n"},
            r"^docker-compose\.yaml: YAML syntax error at line \d+",
        ),
        ({"task_yaml": "difficulty: easy\n"}, r"^task\.yaml: instruction: missing"),
        (
            {"task_yaml": "instruction: Do it.\nmax_test_timeout_sec: -5\n"},
            r"^task\.yaml: max_test_timeout_sec",
        ),
        ({"task_yaml": "- just\n- a list\n"}, r"^task\.yaml: expected a mapping"),
        ({"run_tests": None}, r"^run-tests\.sh: missing \(no run-tests\.sh"),
        ({"dockerfile": None}, r"^Dockerfile: missing"),
        ({"dockerfile": "RUN echo no base\n"}, r"^Dockerfile: no FROM instruction"),
        ({"tests": {"test.sh": "echo\n"}}, r"^tests/test\.sh: clashes"),
    ],
    ids=[
        "bad-task-yaml",
        "bad-compose-yaml",
        "no-instruction",
        "bad-timeout",
        "not-a-mapping",
        "no-run-tests",
        "no-dockerfile",
        "no-from",
        "tests-test-sh-clash",
    ],
)
def test_bad_task_is_failed_naming_the_file(tmp_path: Path, kwargs: dict, expected: str) -> None:
    src = make_tb1(tmp_path / "tb1", **kwargs)
    item = only(import_tb1_tasks(src, tmp_path / "out"), "failed")
    assert re.search(expected, item.detail), item.detail
    assert not (tmp_path / "out" / "hello-file").exists()
    with pytest.raises(TaskError):
        convert_tb1_task(src)


def test_bad_yaml_reports_the_right_line(tmp_path: Path) -> None:
    src = make_tb1(
        tmp_path / "tb1", task_yaml="instruction: Do it.\ndifficulty: easy\ntags: [a, b\n"
    )
    item = only(import_tb1_tasks(src, tmp_path / "out"), "failed")
    line = int(re.search(r"line (\d+)", item.detail).group(1))
    assert 3 <= line <= 4  # the unclosed list starts on line 3; PyYAML notices at its end


def test_src_without_tasks_raises(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="no such file"):
        import_tb1_tasks(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(TaskError, match=r"no Terminal-Bench 1 task"):
        import_tb1_tasks(tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- skip / overwrite / safety ------------------------------------------------------------


def test_existing_destination_is_skipped_unless_overwrite(tmp_path: Path) -> None:
    src = make_tb1(tmp_path / "tb1")
    out = tmp_path / "out"
    only(import_tb1_tasks(src, out))
    marker = out / "hello-file" / "edited.txt"
    marker.write_text("mine")

    item = only(import_tb1_tasks(src, out), "skipped")
    assert "exists" in item.detail
    assert marker.read_text() == "mine"

    (src / "task.yaml").write_text("instruction: Changed.\n")
    only(import_tb1_tasks(src, out, overwrite=True))
    assert not marker.exists()
    assert (out / "hello-file" / "instruction.md").read_text() == "Changed.\n"
    assert check_task(out / "hello-file").valid


def test_failed_overwrite_keeps_the_existing_task(tmp_path: Path) -> None:
    src = make_tb1(tmp_path / "tb1")
    out = tmp_path / "out"
    only(import_tb1_tasks(src, out))
    before = (out / "hello-file" / "task.toml").read_text()
    (src / "run-tests.sh").unlink()
    only(import_tb1_tasks(src, out, overwrite=True), "failed")
    assert (out / "hello-file" / "task.toml").read_text() == before
    assert check_task(out / "hello-file").valid
    assert [p.name for p in out.iterdir()] == ["hello-file"]  # no temp folders left behind


def test_converting_does_not_touch_the_source(tmp_path: Path) -> None:
    src = make_tb1(tmp_path / "tb1")
    before = {
        p.relative_to(src): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in src.rglob("*")
        if p.is_file()
    }
    only(import_tb1_tasks(src, src / "converted"))  # even with DEST inside the task
    after = {
        p.relative_to(src): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in src.rglob("*")
        if p.is_file() and "converted" not in p.relative_to(src).parts
    }
    assert after == before
    env = src / "converted" / "hello-file" / "environment"
    assert not (env / "converted").exists()


def test_convert_tb1_task_returns_an_in_memory_task(tmp_path: Path) -> None:
    task = convert_tb1_task(make_tb1(tmp_path / "tb1"))
    assert task.path is None
    assert task.name == "hello-file"
    assert task.config.agent.timeout_sec == 900.0
    assert {
        "tests/test.sh",
        "tests/run-tests.sh",
        "solution/solve.sh",
        "environment/Dockerfile",
    } <= set(task.files)
    saved = task.save(tmp_path / "saved")
    assert check_task(saved).valid


# -- CLI ------------------------------------------------------------------------------------


def test_cli_import_tb1(tmp_path: Path) -> None:
    src = tmp_path / "tb1"
    make_tb1(src, "good-one")
    runner = CliRunner()
    ok = runner.invoke(app, ["tasks", "import-tb1", str(src), str(tmp_path / "out")])
    assert ok.exit_code == 0, ok.output
    assert "1 converted, 0 skipped, 0 failed" in ok.output
    assert check_task(tmp_path / "out" / "good-one").valid

    make_tb1(src, "bad-one", run_tests=None)
    bad = runner.invoke(app, ["tasks", "import-tb1", str(src), str(tmp_path / "out")])
    assert bad.exit_code == 1, bad.output
    assert "bad-one" in bad.output and "failed" in bad.output
    assert "0 converted, 1 skipped, 1 failed" in bad.output

    missing = runner.invoke(
        app, ["tasks", "import-tb1", str(tmp_path / "nope"), str(tmp_path / "o")]
    )
    assert missing.exit_code == 2
