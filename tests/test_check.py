"""`check_task`, `check_many` and `ttgen tasks check`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ttgen.check import CheckResult, check_many, check_task
from ttgen.cli import app

GOOD_TOML = 'schema_version = "1.2"\n'
PREBUILT_TOML = '[environment]\ndocker_image = "ttgen/base:bookworm"\n'
DOCKERFILE = "FROM ttgen/base:bookworm\nWORKDIR /app\n"
TEST_SH = "#!/bin/bash\necho 1 > /logs/verifier/reward.txt\n"


def make(
    root: Path,
    *,
    toml: str | bytes | None = GOOD_TOML,
    instruction: str | bytes | None = "Do the thing.\n",
    dockerfile: str | None = DOCKERFILE,
    test_sh: str | None = TEST_SH,
    extra: dict[str, str] | None = None,
) -> Path:
    root.mkdir(parents=True)
    if isinstance(toml, bytes):
        (root / "task.toml").write_bytes(toml)
    elif toml is not None:
        (root / "task.toml").write_text(toml)
    if isinstance(instruction, bytes):
        (root / "instruction.md").write_bytes(instruction)
    elif instruction is not None:
        (root / "instruction.md").write_text(instruction)
    (root / "environment").mkdir()
    if dockerfile is not None:
        (root / "environment" / "Dockerfile").write_text(dockerfile)
    if test_sh is not None:
        (root / "tests").mkdir()
        (root / "tests" / "test.sh").write_text(test_sh)
    for rel, content in (extra or {}).items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    return root


def _with_empty_tests(root: Path) -> Path:
    (root / "tests").mkdir()
    return root


def test_a_task_without_tests_is_valid_with_a_warning(tmp_path):
    # The paper's adapter tasks have no tests: they can be rolled out, not scored.
    result = check_task(make(tmp_path / "t", test_sh=None))
    assert result.valid, result.problems
    assert any("nothing can score the task" in w for w in result.warnings)


def make_tb1(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "task.yaml").write_text("instruction: |\n  Do the thing.\ndifficulty: easy\n")
    (root / "Dockerfile").write_text("FROM ubuntu:24.04\n")
    (root / "run-tests.sh").write_text("#!/bin/bash\npytest\n")
    return root


# name → (builder, words the first problem must contain)
INVALID: dict[str, tuple] = {
    "toml-syntax": (
        lambda r: make(r, toml='schema_version = "1.2"\n[environment\n'),
        ["task.toml", "line 2"],
    ),
    "no-instruction": (lambda r: make(r, instruction=None), ["instruction.md", "missing"]),
    "instruction-latin1": (
        lambda r: make(r, instruction="café\n".encode("latin-1")),
        ["instruction.md", "UTF-8"],
    ),
    "instruction-empty": (lambda r: make(r, instruction="  \n\n"), ["instruction.md", "empty"]),
    "no-test-sh": (
        lambda r: _with_empty_tests(make(r, test_sh=None)),
        ["tests/test.sh", "missing"],
    ),
    "no-image": (lambda r: make(r, dockerfile=None), ["environment/Dockerfile", "docker_image"]),
    "no-from": (
        lambda r: make(r, dockerfile="# just a comment\nRUN echo hi\n"),
        ["environment/Dockerfile", "FROM"],
    ),
    "bad-memory": (
        lambda r: make(r, toml='[environment]\nmemory = "lots"\n'),
        ["task.toml", "memory", "lots"],
    ),
    "tb1": (make_tb1, ["task.toml", "Terminal-Bench 1", "import-tb1"]),
    "windows": (
        lambda r: make(r, toml='[environment]\nos = "windows"\n'),
        ["task.toml", "windows", "not supported"],
    ),
}


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    """A folder with one valid task and one task of every invalid kind."""
    root = tmp_path / "suite"
    make(root / "valid")
    for name, (build, _words) in INVALID.items():
        build(root / name)
    return root


@pytest.mark.parametrize("kind", list(INVALID))
def test_invalid_task_gets_a_one_line_reason_naming_the_file(tmp_path, kind):
    build, words = INVALID[kind]
    root = build(tmp_path / kind)
    result = check_task(root)
    assert result.valid is False
    assert result.problems, result
    reason = result.problems[0]
    assert "\n" not in reason
    for word in words:
        assert word in reason, (word, reason)
    # The reason starts with the file it is about, relative to the task.
    assert reason.split(":", 1)[0] == words[0]
    assert result.path == str(root)


def test_each_invalid_task_reports_only_its_own_problem(tmp_path):
    for kind, (build, _words) in INVALID.items():
        if kind == "tb1":
            continue  # a TB1 task is wrong in several ways at once
        result = check_task(build(tmp_path / kind))
        assert len(result.problems) == 1, (kind, result.problems)


def test_valid_task_is_valid(tmp_path):
    result = check_task(make(tmp_path / "ok"))
    assert result == CheckResult(str(tmp_path / "ok"), "ok", True, [], [])


def test_docker_image_without_dockerfile_is_valid(tmp_path):
    result = check_task(make(tmp_path / "pre", toml=PREBUILT_TOML, dockerfile=None))
    assert result.valid, result.problems
    assert result.problems == []


def test_name_comes_from_task_table(tmp_path):
    result = check_task(make(tmp_path / "folder", toml='[task]\nname = "org/real-name"\n'))
    assert result.valid and result.name == "org/real-name"


def test_several_problems_are_all_reported(tmp_path):
    root = make(
        tmp_path / "bad", toml="[x\n", dockerfile="RUN true\n", test_sh=None, instruction=""
    )
    (root / "tests").mkdir()
    result = check_task(root)
    joined = "\n".join(result.problems)
    assert "task.toml" in joined
    assert "instruction.md: empty" in joined
    assert "tests/test.sh" in joined
    assert "FROM" in joined


@pytest.mark.parametrize("content", ["", "  \n\n"], ids=["zero-bytes", "whitespace"])
def test_empty_test_sh_is_invalid(tmp_path, content):
    result = check_task(make(tmp_path / "empty-test", test_sh=content))
    assert result.valid is False
    assert result.problems == ["tests/test.sh: empty"]


def test_warning_when_nothing_mentions_the_reward_file(tmp_path):
    root = make(tmp_path / "noreward", test_sh="#!/bin/bash\npytest /tests\n")
    result = check_task(root)
    assert result.valid
    assert len(result.warnings) == 1
    assert "reward.txt" in result.warnings[0] and result.warnings[0].startswith("tests/")


def test_no_warning_when_another_test_file_writes_the_reward(tmp_path):
    root = make(
        tmp_path / "helper",
        test_sh="#!/bin/bash\npython3 /tests/run.py\n",
        extra={"tests/run.py": "open('/logs/verifier/reward.json', 'w').write('{}')\n"},
    )
    result = check_task(root)
    assert result.valid and result.warnings == []


def test_solution_without_solve_sh_warns(tmp_path):
    root = make(tmp_path / "sol", extra={"solution/notes.md": "no script"})
    result = check_task(root)
    assert result.valid
    assert any(w.startswith("solution/") for w in result.warnings)


def test_gpu_task_warns_but_is_valid(tmp_path):
    result = check_task(make(tmp_path / "gpu", toml="[environment]\ngpus = 1\n"))
    assert result.valid
    assert any("gpus" in w for w in result.warnings)


def test_compose_only_task_is_invalid(tmp_path):
    root = make(
        tmp_path / "compose",
        dockerfile=None,
        extra={"environment/docker-compose.yaml": "services: {}\n"},
    )
    result = check_task(root)
    assert not result.valid
    assert "docker-compose" in result.problems[0]


# -- never crashes ----------------------------------------------------------------------------


def test_task_toml_that_is_a_directory(tmp_path):
    root = make(tmp_path / "tomldir", toml=None)
    (root / "task.toml").mkdir()
    result = check_task(root)
    assert result.valid is False
    assert result.problems[0].startswith("task.toml:")
    assert not any("unexpected error" in p for p in result.problems)


def test_other_paths_that_are_directories(tmp_path):
    root = make(tmp_path / "dirs", instruction=None, dockerfile=None, test_sh=None)
    (root / "instruction.md").mkdir()
    (root / "environment" / "Dockerfile").mkdir()
    (root / "tests").mkdir()
    (root / "tests" / "test.sh").mkdir()
    result = check_task(root)
    assert result.valid is False
    joined = "\n".join(result.problems)
    assert (
        "instruction.md" in joined
        and "tests/test.sh" in joined
        and "environment/Dockerfile" in joined
    )
    assert not any("unexpected error" in p for p in result.problems)


def test_environment_and_tests_that_are_files(tmp_path):
    root = make(tmp_path / "files", dockerfile=None, test_sh=None)
    (root / "environment").rmdir()
    (root / "environment").write_text("not a folder")
    (root / "tests").write_text("not a folder")
    result = check_task(root)
    assert result.valid is False
    assert not any("unexpected error" in p for p in result.problems)


def test_missing_and_empty_task_directories(tmp_path):
    missing = check_task(tmp_path / "does-not-exist")
    assert missing.valid is False and missing.problems
    (tmp_path / "empty").mkdir()
    empty = check_task(tmp_path / "empty")
    assert empty.valid is False and empty.problems


def test_binary_junk_everywhere(tmp_path):
    root = make(tmp_path / "junk", toml=b"\xff\xfe\x00garbage", dockerfile=None, test_sh=None)
    (root / "environment" / "Dockerfile").write_bytes(b"\x00\xff FROM")
    (root / "tests").mkdir()
    (root / "tests" / "test.sh").write_bytes(b"\xff\xfe\x00\x01")
    result = check_task(root)
    assert result.valid is False
    assert result.problems[0].startswith("task.toml:") and "UTF-8" in result.problems[0]
    assert not any("unexpected error" in p for p in result.problems)


# -- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def runner(tmp_path, monkeypatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_cli_json_lines(suite, runner):
    res = runner.invoke(app, ["tasks", "check", "--json", str(suite)])
    assert res.exit_code == 1, res.output
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    objs = [json.loads(line) for line in lines]
    assert len(objs) == len(INVALID) + 1
    for obj in objs:
        assert set(obj) == {"path", "name", "valid", "problems", "warnings"}
    by_dir = {Path(o["path"]).name: o for o in objs}
    assert set(by_dir) == {"valid", *INVALID}
    assert by_dir["valid"]["valid"] is True and by_dir["valid"]["problems"] == []
    for kind, (_build, words) in INVALID.items():
        obj = by_dir[kind]
        assert obj["valid"] is False, kind
        assert all(w in obj["problems"][0] for w in words), (kind, obj["problems"])
    # Sorted by path, as find_tasks returns them.
    assert [o["path"] for o in objs] == sorted(o["path"] for o in objs)


def test_cli_table_names_every_invalid_task(suite, runner):
    res = runner.invoke(app, ["tasks", "check", str(suite)], env={"COLUMNS": "400"})
    assert res.exit_code == 1, res.output
    out = res.stdout
    for kind in INVALID:
        assert str(suite / kind) in out, kind
    assert str(suite / "valid") + " " not in out  # only invalid ones without --verbose
    assert "invalid" in out
    summary = {
        line.split()[0]: line.split()[-1]
        for line in out.splitlines()
        if line.split() and line.split()[0] in ("tasks", "valid", "invalid")
    }
    assert summary["tasks"] == str(len(INVALID) + 1)
    assert summary["invalid"] == str(len(INVALID))
    assert summary["valid"] == "1"


def test_cli_verbose_lists_valid_tasks_and_warnings(tmp_path, runner):
    make(tmp_path / "s" / "ok")
    make(tmp_path / "s" / "warn", test_sh="#!/bin/sh\npytest\n")
    res = runner.invoke(
        app, ["tasks", "check", "--verbose", str(tmp_path / "s")], env={"COLUMNS": "400"}
    )
    assert res.exit_code == 0, res.output
    assert str(tmp_path / "s" / "ok") in res.stdout
    assert "reward.txt" in res.stdout


def test_cli_exit_0_when_all_valid(tmp_path, runner):
    make(tmp_path / "s" / "a")
    make(tmp_path / "s" / "b", toml=PREBUILT_TOML, dockerfile=None)
    res = runner.invoke(app, ["tasks", "check", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["tasks", "check", "--json", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["valid"] for line in res.stdout.splitlines()] == [True, True]


def test_cli_single_task_path(tmp_path, runner):
    root = make(tmp_path / "one", toml="[environment\n")
    res = runner.invoke(app, ["tasks", "check", "--json", str(root)])
    assert res.exit_code == 1
    (obj,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert obj["path"] == str(root) and "line" in obj["problems"][0]


@pytest.mark.parametrize("valid", [True, False])
def test_cli_names_the_task_when_run_inside_it(tmp_path, runner, monkeypatch, valid):
    root = make(tmp_path / "my-task", instruction="Do it.\n" if valid else None)
    monkeypatch.chdir(root)
    res = runner.invoke(app, ["tasks", "check", "--json", "."])
    assert res.exit_code == (0 if valid else 1), res.output
    (obj,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert obj["valid"] is valid
    assert obj["name"] == "my-task"


def test_cli_missing_path_exits_2(tmp_path, runner):
    res = runner.invoke(app, ["tasks", "check", str(tmp_path / "nowhere")])
    assert res.exit_code == 2
    assert str(tmp_path / "nowhere") in res.output


def test_cli_never_crashes_on_weird_tasks(tmp_path, runner):
    make(tmp_path / "s" / "tomldir", toml=None)
    (tmp_path / "s" / "tomldir" / "task.toml").mkdir()
    make(tmp_path / "s" / "instrdir", instruction=None)
    (tmp_path / "s" / "instrdir" / "instruction.md").mkdir()
    res = runner.invoke(app, ["tasks", "check", "--json", str(tmp_path / "s")])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code == 1
    objs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["valid"] for o in objs] == [False, False]


# -- batches ------------------------------------------------------------------------------------


def test_large_batch_in_processes_matches_serial_in_order(tmp_path):
    builders = [lambda r: make(r), lambda r: make(r, toml=PREBUILT_TOML, dockerfile=None)]
    builders += [b for b, _ in INVALID.values()]
    paths = []
    for i in range(600):
        # Names whose sort order is not creation order, to catch reordering.
        root = tmp_path / "batch" / f"{(i * 7919) % 600:03d}-{i}"
        builders[i % len(builders)](root)
        paths.append(root)
    serial = list(check_many(paths, workers=1))
    parallel = list(check_many(paths, workers=2))
    assert [r.path for r in serial] == [str(p) for p in paths]
    assert parallel == serial
    n_valid = sum(r.valid for r in serial)
    assert n_valid == sum(1 for i in range(600) if i % len(builders) < 2)
    assert 0 < n_valid < 600


# -- unknown keys and text shown through rich -----------------------------------------------------


def test_unknown_keys_warn_naming_the_table_and_the_nearest_known_key(tmp_path):
    toml = "[verifier]\ntimeout = 5\n[environment]\nfoo_bar = 1\n"
    result = check_task(make(tmp_path / "typo", toml=toml))
    assert result.valid, result.problems  # kept, as Harbor's added keys are: not a problem
    assert 'task.toml: [verifier] unknown key "timeout" (kept); did you mean "timeout_sec"?' in (
        result.warnings
    )
    assert 'task.toml: [environment] unknown key "foo_bar" (kept)' in result.warnings


def test_cli_shows_table_names_in_reasons(tmp_path, runner):
    make(tmp_path / "s" / "bad", toml='[verifier]\ntimeout_sec = "soon"\n', dockerfile=None)
    res = runner.invoke(app, ["tasks", "check", str(tmp_path / "s")], env={"COLUMNS": "400"})
    assert res.exit_code == 1, res.output
    assert "task.toml: [verifier] timeout_sec:" in res.stdout
    assert "task.toml sets no [environment] docker_image" in res.stdout


def test_cli_error_prints_a_bracketed_path_literally(tmp_path, runner):
    missing = tmp_path / "[x]" / "nowhere"
    res = runner.invoke(app, ["tasks", "check", str(missing)], env={"COLUMNS": "400"})
    assert res.exit_code == 2
    assert f"{missing}: no such file or directory" in res.stderr


def test_cli_task_paths_with_brackets_are_shown_literally(tmp_path, runner):
    make(tmp_path / "s" / "[draft] task", instruction=None)
    res = runner.invoke(app, ["tasks", "check", str(tmp_path / "s")], env={"COLUMNS": "400"})
    assert res.exit_code == 1, res.output
    assert str(tmp_path / "s" / "[draft] task") in res.stdout


def test_cli_unknown_key_warnings(tmp_path, runner):
    make(tmp_path / "s" / "typo", toml="[verifier]\ntimeout = 5\n")
    res = runner.invoke(app, ["tasks", "check", str(tmp_path / "s")], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output  # a warning never makes a task invalid
    # Without -v: the count, and how to see them.
    counts = {line.split()[0]: line for line in res.stdout.splitlines() if line.strip()}
    assert counts["with"].split()[2] == "1" and "-v" in counts["with"]
    res = runner.invoke(app, ["tasks", "check", "-v", str(tmp_path / "s")], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    assert '[verifier] unknown key "timeout" (kept); did you mean "timeout_sec"?' in res.stdout


# -- tasks without tests and keys Harbor deprecates ----------------------------------------------


def test_no_tests_script_is_valid_with_a_warning_and_agrees_with_metadata(tmp_path):
    from ttgen.task import NO_TESTS_SCRIPT, Task

    meta = "[metadata]\nhas_tests = false\n"
    root = make(tmp_path / "t", toml=meta, test_sh=NO_TESTS_SCRIPT)
    result = check_task(root)
    assert result.valid, result.problems
    assert result.warnings == [
        "tests/test.sh: no tests, by design (it writes {} to /logs/verifier/reward.json), so "
        "nothing can score the task: Harbor records its trials without a reward; ttgen does not "
        "run it (outcome unverified)"
    ]
    assert not Task.load(root).has_tests
    # Other comments, CRLF line ends: still the no-tests script; one more command: real tests.
    edited = NO_TESTS_SCRIPT.replace("# No tests", "# Nothing to test").replace("\n", "\r\n")
    assert not Task.load(make(tmp_path / "e", test_sh=edited)).has_tests
    more = NO_TESTS_SCRIPT + "echo 1 > /logs/verifier/reward.txt\n"
    assert Task.load(make(tmp_path / "m", test_sh=more)).has_tests


def test_has_tests_metadata_that_disagrees_warns(tmp_path):
    from ttgen.task import NO_TESTS_SCRIPT

    real = check_task(make(tmp_path / "real", toml="[metadata]\nhas_tests = false\n"))
    assert real.valid
    assert (
        "task.toml: [metadata] has_tests = false, but the task has tests (tests/test.sh scores it)"
        in real.warnings
    )
    none = check_task(
        make(tmp_path / "none", toml="[metadata]\nhas_tests = true\n", test_sh=NO_TESTS_SCRIPT)
    )
    assert (
        "task.toml: [metadata] has_tests = true, but the task has no tests (nothing scores it)"
        in (none.warnings)
    )
    old = check_task(make(tmp_path / "old", toml="[metadata]\nhas_tests = false\n", test_sh=None))
    assert not any("has_tests" in w for w in old.warnings)
    assert any("Harbor refuses a task without tests/test.sh" in w for w in old.warnings)


DEPRECATED_TOML = """\
version = "1.0"

[environment]
allow_internet = false
memory = "1G"
storage = 4096

[verifier.environment]
memory = "10GiB"
allow_internet = true
network_mode = "no-network"

[[steps]]
name = "first"
[steps.verifier.environment]
storage = "2G"
storage_mb = 1000
allow_internet = true

[[steps]]
name = "second"
[steps.verifier.environment]
memory = "512M"
memory_mb = 512
"""


def test_keys_harbor_deprecates_warn_naming_key_and_replacement(tmp_path):
    result = check_task(make(tmp_path / "old", toml=DEPRECATED_TOML))
    assert result.valid, result.problems  # Harbor still reads them: warnings, not problems
    deprecated = [w for w in result.warnings if "deprecated" in w]
    assert deprecated == [
        'task.toml: version = "1.0" is deprecated by Harbor; write schema_version = "1.0"',
        "task.toml: [environment] allow_internet = false is deprecated by Harbor; write "
        'network_mode = "no-network"',
        'task.toml: [environment] memory = "1G" is deprecated by Harbor; write memory_mb = 1024',
        "task.toml: [environment] storage = 4096 is deprecated by Harbor, and Harbor ignores a "
        "number here; write storage_mb = 4096",
        "task.toml: [verifier.environment] allow_internet = true is deprecated by Harbor and "
        "ignored, as network_mode or allowed_hosts is set; remove it",
        'task.toml: [verifier.environment] memory = "10GiB" is deprecated by Harbor, and Harbor '
        "cannot read '10GiB' (it takes a number with K, M or G); write memory_mb = 10240",
        'task.toml: [verifier.environment] of step "first" ([[steps]]) allow_internet = true is '
        'deprecated by Harbor; write network_mode = "public"',
        'task.toml: [verifier.environment] of step "first" ([[steps]]) storage = "2G" is '
        "deprecated by Harbor, and it differs from storage_mb = 1000, so Harbor refuses the "
        "task; remove storage",
        'task.toml: [verifier.environment] of step "second" ([[steps]]) memory = "512M" is '
        "deprecated by Harbor and ignored, as memory_mb is set; remove it",
    ]


def test_version_beside_schema_version_and_modern_files_do_not_warn(tmp_path):
    both = check_task(make(tmp_path / "both", toml='version = "1.0"\nschema_version = "1.2"\n'))
    assert [w for w in both.warnings if "deprecated" in w] == [
        'task.toml: version = "1.0" is deprecated by Harbor and ignored, as schema_version is '
        "set; remove it"
    ]
    modern = (
        'schema_version = "1.2"\n[task]\nname = "org/x"\nversion = "2.0"\n'  # [task] version: ok
        '[environment]\nmemory_mb = 1024\nstorage_mb = 2048\nnetwork_mode = "no-network"\n'
    )
    result = check_task(make(tmp_path / "modern", toml=modern))
    assert result.valid and result.warnings == []


def test_the_legacy_example_task_warns_about_each_deprecated_key():
    """examples/tasks/fix-offline-repo is in TB2's legacy form on purpose; the other examples are
    in the modern form and check clean."""
    examples = Path(__file__).resolve().parent.parent / "examples" / "tasks"
    legacy = check_task(examples / "fix-offline-repo")
    assert legacy.valid and legacy.warnings == [
        'task.toml: version = "1.0" is deprecated by Harbor; write schema_version = "1.0"',
        "task.toml: [environment] allow_internet = false is deprecated by Harbor; write "
        'network_mode = "no-network"',
        'task.toml: [environment] memory = "1G" is deprecated by Harbor; write memory_mb = 1024',
        'task.toml: [environment] storage = "2G" is deprecated by Harbor; write storage_mb = 2048',
    ]
    for name in ("hello-world", "csv-report"):
        assert check_task(examples / name).warnings == [], name


def test_cli_names_deprecated_keys(tmp_path, runner):
    make(tmp_path / "s" / "old", toml="[environment]\nallow_internet = false\n")
    res = runner.invoke(app, ["tasks", "check", "-v", str(tmp_path / "s")], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    assert (
        "task.toml: [environment] allow_internet = false is deprecated by Harbor; write "
        'network_mode = "no-network"' in res.stdout
    )


def test_allowlist_network_warns_that_ttgen_cannot_enforce_it(tmp_path):
    toml = '[environment]\nnetwork_mode = "allowlist"\nallowed_hosts = ["pypi.org"]\n'
    result = check_task(make(tmp_path / "allow", toml=toml))
    assert result.valid
    assert any("allowed_hosts" in w and "whole network" in w for w in result.warnings)
