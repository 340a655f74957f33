"""The task model: task.toml in all its forms, loading errors, saving, discovery."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

import ttgen.task
from ttgen.errors import TaskError
from ttgen.task import Task, TaskConfig, find_tasks, parse_size_mb

TB2_LEGACY = """\
version = "1.0"

[metadata]
author_name = "Jane Doe"
author_email = "jane@example.com"
difficulty = "hard"
category = "software-engineering"
tags = ["golf", "c"]
expert_time_estimate_min = 2400.0
junior_time_estimate_min = 9600.0

[verifier]
timeout_sec = 900.0

[agent]
timeout_sec = 900.0

[environment]
build_timeout_sec = 1200.0
docker_image = "alexgshaw/gpt2-codegolf:20251031"
cpus = 1
memory = "4G"
storage = "10G"
"""

REGISTRY_11 = """\
schema_version = "1.1"
source = "terminal-bench@2.1"
artifacts = ["/app/out.txt", { source = "/logs/extra", destination = "extra", exclude = ["*.tmp"] }]
multi_step_reward_strategy = "final"
top_level_future = "kept"

[task]
name = "terminal-bench/x"
description = "Build the thing."
keywords = ["build", "c"]
task_future = 7

[[task.authors]]
name = "Jane Doe"
email = "jane@example.com"

[[task.authors]]
name = "John Roe"
email = "john@example.com"

[metadata]
difficulty = "medium"
tags = ["build"]

[verifier]
timeout_sec = 1800.0
environment_mode = "shared"

[verifier.env]
PYTHONUNBUFFERED = "1"

[agent]
timeout_sec = 3600.0

[solution.env]
SOLVER = "oracle"

[environment]
build_timeout_sec = 900.0
docker_image = "alexgshaw/x:20251031"
cpus = 2
memory_mb = 8192
storage_mb = 10240
gpus = 0
network_mode = "public"
mcp_servers = []
future_key = "v"

[environment.env]
API_URL = "${API_URL:-http://localhost}"

[environment.healthcheck]
command = "test -f /tmp/ready"
retries = 5

[custom]
x = 1

[custom.nested]
deep = [1, 2, 3]

[[steps]]
name = "first"
instruction = "step one"

[[steps]]
name = "second"
instruction = "step two"
"""


def write_task(
    root: Path,
    *,
    toml: str = 'schema_version = "1.2"\n[environment]\ndocker_image = "ttgen/base:bookworm"\n',
    instruction: str | bytes | None = "Do the thing.\n",
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "task.toml").write_text(toml)
    if isinstance(instruction, bytes):
        (root / "instruction.md").write_bytes(instruction)
    elif instruction is not None:
        (root / "instruction.md").write_text(instruction)
    return root


def is_executable(p: Path) -> bool:
    return bool(p.stat().st_mode & stat.S_IXUSR)


# -- task.toml forms ------------------------------------------------------------------------


def test_tb2_legacy_task_toml_loads_with_sizes_in_mb():
    cfg = TaskConfig.from_toml(TB2_LEGACY)
    assert cfg.schema_version == "1.0"
    env = cfg.environment
    assert env.memory_mb == 4096
    assert env.storage_mb == 10240
    assert env.cpus == 1
    assert env.docker_image == "alexgshaw/gpt2-codegolf:20251031"
    assert env.build_timeout_sec == 1200.0
    assert cfg.verifier.timeout_sec == 900.0
    assert cfg.agent.timeout_sec == 900.0
    assert cfg.metadata["author_name"] == "Jane Doe"
    assert cfg.metadata["difficulty"] == "hard"
    assert cfg.metadata["tags"] == ["golf", "c"]
    assert cfg.metadata["expert_time_estimate_min"] == 2400.0
    assert cfg.task is None


def test_tb2_legacy_task_toml_round_trips(tmp_path):
    root = write_task(tmp_path / "legacy", toml=TB2_LEGACY)
    task = Task.load(root)
    task.save()
    written = tomllib.loads((root / "task.toml").read_text())
    # The legacy forms become the modern ones, with the same meaning.
    assert written["schema_version"] == "1.0"
    assert written["environment"]["memory_mb"] == 4096
    assert written["environment"]["storage_mb"] == 10240
    assert "memory" not in written["environment"] and "version" not in written
    again = Task.load(root)
    assert again.config == task.config
    assert again.config.to_dict() == task.config.to_dict()


def test_registry_schema_11_loads_every_known_table():
    cfg = TaskConfig.from_toml(REGISTRY_11)
    assert cfg.schema_version == "1.1"
    assert cfg.task is not None
    assert cfg.task.name == "terminal-bench/x"
    assert cfg.task.description == "Build the thing."
    assert cfg.task.keywords == ["build", "c"]
    assert [(a.name, a.email) for a in cfg.task.authors] == [
        ("Jane Doe", "jane@example.com"),
        ("John Roe", "john@example.com"),
    ]
    env = cfg.environment
    assert (env.cpus, env.memory_mb, env.storage_mb, env.gpus) == (2, 8192, 10240, 0)
    assert env.allow_internet is True
    assert env.mcp_servers == []
    assert env.env == {"API_URL": "${API_URL:-http://localhost}"}
    assert env.healthcheck is not None
    assert env.healthcheck.command == "test -f /tmp/ready"
    assert env.healthcheck.retries == 5
    assert env.healthcheck.interval_sec == 5.0  # Harbor's default
    assert cfg.verifier.env == {"PYTHONUNBUFFERED": "1"}
    assert cfg.solution.env == {"SOLVER": "oracle"}
    assert cfg.source == "terminal-bench@2.1"


def test_registry_schema_11_round_trip_is_lossless(tmp_path):
    root = write_task(tmp_path / "reg", toml=REGISTRY_11)
    original = Task.load(root)
    original.save()
    reloaded = Task.load(root)
    assert reloaded.config == original.config
    assert reloaded.config.to_dict() == original.config.to_dict()
    assert reloaded.name == "terminal-bench/x"

    # What is on disk means what the original file meant, unknown keys included.
    assert tomllib.loads((root / "task.toml").read_text()) == tomllib.loads(REGISTRY_11)

    # A second save does not drift.
    first = (root / "task.toml").read_text()
    reloaded.save()
    assert (root / "task.toml").read_text() == first


def test_unknown_keys_are_written_back(tmp_path):
    root = write_task(tmp_path / "reg", toml=REGISTRY_11)
    Task.load(root).save(tmp_path / "copy")
    written = tomllib.loads((tmp_path / "copy" / "task.toml").read_text())
    assert written["top_level_future"] == "kept"
    assert written["multi_step_reward_strategy"] == "final"
    assert written["custom"] == {"x": 1, "nested": {"deep": [1, 2, 3]}}
    assert written["environment"]["future_key"] == "v"
    assert written["task"]["task_future"] == 7
    assert written["verifier"]["environment_mode"] == "shared"
    assert written["steps"] == [
        {"name": "first", "instruction": "step one"},
        {"name": "second", "instruction": "step two"},
    ]
    assert written["artifacts"] == [
        "/app/out.txt",
        {"source": "/logs/extra", "destination": "extra", "exclude": ["*.tmp"]},
    ]


def test_harbor_defaults_apply_when_keys_are_absent():
    cfg = TaskConfig.from_toml('[task]\nname = "org/minimal"\n')
    assert cfg.verifier.timeout_sec == 600.0
    assert cfg.environment.build_timeout_sec == 600.0
    assert cfg.agent.timeout_sec is None
    assert cfg.environment.allow_internet is True
    assert cfg.environment.os == "linux"
    assert cfg.environment.docker_image is None
    assert cfg.environment.cpus is None
    assert cfg.environment.memory_mb is None
    assert cfg.environment.mcp_servers == []
    assert cfg.metadata == {}
    assert cfg.schema_version == "1.2"


def test_defaults_are_not_written_when_the_file_did_not_have_them(tmp_path):
    toml = '[task]\nname = "org/minimal"\n\n[verifier.env]\nA = "1"\n\n[environment]\ncpus = 1\n'
    root = write_task(tmp_path / "minimal", toml=toml)
    Task.load(root).save()
    written = tomllib.loads((root / "task.toml").read_text())
    assert written == tomllib.loads(toml)
    assert "schema_version" not in written
    assert "timeout_sec" not in written["verifier"]
    assert "agent" not in written
    assert "solution" not in written
    assert "metadata" not in written
    for key in (
        "build_timeout_sec",
        "allow_internet",
        "network_mode",
        "os",
        "mcp_servers",
        "env",
        "memory_mb",
    ):
        assert key not in written["environment"], key


def test_explicit_defaults_in_the_file_are_kept(tmp_path):
    toml = (
        'schema_version = "1.2"\n\n[verifier]\ntimeout_sec = 600.0\n\n'
        '[environment]\nnetwork_mode = "public"\nbuild_timeout_sec = 600.0\n'
    )
    root = write_task(tmp_path / "explicit", toml=toml)
    Task.load(root).save()
    assert tomllib.loads((root / "task.toml").read_text()) == tomllib.loads(toml)


@pytest.mark.parametrize(
    ("legacy", "mode"),
    [
        ("allow_internet = true", "public"),
        ("allow_internet = false", "no-network"),
        ('allow_internet = false\nnetwork_mode = "public"', "public"),  # network_mode wins
        ('allow_internet = true\nnetwork_mode = "allowlist"\nallowed_hosts = ["pypi.org"]',
         "allowlist"),
    ],
)  # fmt: skip
def test_allow_internet_is_read_as_network_mode_and_written_as_it(tmp_path, legacy, mode):
    # Harbor 0.24 deprecates allow_internet for network_mode, and maps it the same way.
    root = write_task(tmp_path / "net", toml=f"[environment]\n{legacy}\n")
    task = Task.load(root)
    assert task.config.environment.network_mode == mode
    assert task.config.environment.allow_internet is (mode != "no-network")
    task.save()
    written = tomllib.loads((root / "task.toml").read_text())["environment"]
    assert "allow_internet" not in written and written["network_mode"] == mode


def test_allowed_hosts_need_the_allowlist_mode():
    with pytest.raises(ValidationError, match="allowed_hosts is only valid"):
        TaskConfig.from_toml('[environment]\nallowed_hosts = ["pypi.org"]\n')
    with pytest.raises(ValidationError, match="network_mode"):
        TaskConfig.from_toml('[environment]\nnetwork_mode = "offline"\n')


def test_values_changed_in_memory_are_written(tmp_path):
    root = write_task(tmp_path / "t", toml='[task]\nname = "org/t"\n')
    task = Task.load(root)
    task.config.verifier.timeout_sec = 1200.0
    task.config.environment.env["X"] = "y"  # mutated in place, not assigned
    task.config.metadata["difficulty"] = "easy"
    task.save()
    written = tomllib.loads((root / "task.toml").read_text())
    assert written["verifier"] == {"timeout_sec": 1200.0}
    assert written["environment"] == {"env": {"X": "y"}}
    assert written["metadata"] == {"difficulty": "easy"}


# -- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mb"),
    [
        ("4G", 4096),
        ("512M", 512),
        ("2048K", 2),
        ("10GiB", 10240),
        ("1.5G", 1536),
        ("4g", 4096),
        ("256MB", 256),
        ("1T", 1024 * 1024),
        (2048, 2048),
    ],
)
def test_parse_size(text, mb):
    assert parse_size_mb(text) == mb


@pytest.mark.parametrize("bad", ["lots", "", "-1G", "4X", "G", "4 G B", True])
def test_parse_size_rejects_nonsense(bad):
    with pytest.raises(ValueError, match="invalid size"):
        parse_size_mb(bad)


@pytest.mark.parametrize("field", ["memory", "storage"])
def test_bad_legacy_size_names_the_field(field):
    with pytest.raises(ValidationError) as info:
        TaskConfig.from_toml(f'[environment]\n{field} = "lots"\n')
    text = ttgen.task.format_validation_error(info.value)
    assert field in text and "lots" in text


def test_bad_size_in_a_task_dir_names_file_and_field(tmp_path):
    root = write_task(tmp_path / "t", toml='[environment]\nmemory = "lots"\n')
    with pytest.raises(TaskError) as info:
        Task.load(root)
    assert info.value.path == root / "task.toml"
    assert "memory" in str(info.value) and "'lots'" in str(info.value)
    assert "\n" not in str(info.value)


def test_modern_size_wins_over_legacy():
    cfg = TaskConfig.from_toml('[environment]\nmemory = "4G"\nmemory_mb = 1000\n')
    assert cfg.environment.memory_mb == 1000


@pytest.mark.parametrize(
    "toml",
    [
        "[environment]\ncpus = -1\n",
        "[environment]\nmemory_mb = -5\n",
        "[environment]\ngpus = -1\n",
        "[environment]\nmemory = -5\n",
    ],
)
def test_negative_resources_are_rejected(toml):
    with pytest.raises(ValidationError) as info:
        TaskConfig.from_toml(toml)
    assert "negative" in ttgen.task.format_validation_error(info.value)


def test_fractional_and_zero_resources_are_fine():
    cfg = TaskConfig.from_toml("[environment]\ncpus = 0.5\ngpus = 0\n")
    assert cfg.environment.cpus == 0.5 and cfg.environment.gpus == 0


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[verifier]\ntimeout_sec = 0\n", "timeout_sec"),
        ("[verifier]\ntimeout_sec = -1.5\n", "timeout_sec"),
        ("[agent]\ntimeout_sec = 0\n", "timeout_sec"),
        ("[agent]\ntimeout_sec = -10\n", "timeout_sec"),
        ("[environment]\nbuild_timeout_sec = 0\n", "build_timeout_sec"),
    ],
)
def test_non_positive_timeouts_are_rejected(toml, key):
    with pytest.raises(ValidationError) as info:
        TaskConfig.from_toml(toml)
    text = ttgen.task.format_validation_error(info.value)
    assert key in text and "positive" in text


@pytest.mark.parametrize(
    ("table", "key"),
    [("verifier", "timeout_sec"), ("agent", "timeout_sec"), ("environment", "build_timeout_sec")],
)
def test_non_positive_timeout_set_in_memory_is_rejected(table, key):
    """A config edited in code must not accept what Task.load refuses (cpus = -1 is refused)."""
    cfg = TaskConfig()
    with pytest.raises(ValidationError):
        setattr(getattr(cfg, table), key, 0)


def test_unknown_os_is_rejected():
    with pytest.raises(ValidationError):
        TaskConfig.from_toml('[environment]\nos = "macos"\n')


def test_unknown_keys_name_their_table_and_the_nearest_known_key():
    from ttgen.task import unknown_keys

    cfg = TaskConfig.from_toml(
        "[enviroment]\ncpus = 2\n"
        "[environment]\nmemroy_mb = 512\nfoo_bar = 1\n"
        '[environment.helthcheck]\ncommand = "true"\n'
        '[[task.authors]]\nname = "a"\nmail = "a@x"\n'
        '[[task.authors]]\nname = "b"\nmail = "b@x"\n'
        '[metadata]\nanything = 1\n[verifier.env]\nANY = "1"\n'  # free-form: never unknown
    )
    assert unknown_keys(cfg) == [
        "unknown table [enviroment] (kept); did you mean [environment]?",
        '[task.authors] unknown key "mail" (kept); did you mean "email"?',  # once, not per author
        '[environment] unknown key "memroy_mb" (kept); did you mean "memory_mb"?',
        '[environment] unknown key "foo_bar" (kept)',
        "unknown table [environment.helthcheck] (kept); did you mean [environment.healthcheck]?",
    ]
    # Legacy keys Harbor maps are known.
    assert unknown_keys(TaskConfig.from_toml(TB2_LEGACY)) == []


# -- Task.load --------------------------------------------------------------------------------


def test_load_reads_instruction_and_name(tmp_path):
    root = write_task(tmp_path / "my-task", instruction="# Title\n\nDo it.\n")
    task = Task.load(root)
    assert task.name == "my-task"
    assert task.instruction == "# Title\n\nDo it.\n"
    assert task.path == root
    assert task.config.environment.docker_image == "ttgen/base:bookworm"


def test_name_comes_from_task_table(tmp_path):
    root = write_task(tmp_path / "folder-name", toml='[task]\nname = "terminal-bench/x"\n')
    assert Task.load(root).name == "terminal-bench/x"


def test_name_falls_back_to_folder_when_task_table_has_no_name(tmp_path):
    root = write_task(tmp_path / "folder-name", toml='[task]\ndescription = "no name"\n')
    assert Task.load(root).name == "folder-name"


def test_name_is_the_folder_name_when_loaded_as_dot(tmp_path, monkeypatch):
    root = write_task(tmp_path / "my-task")
    monkeypatch.chdir(root)
    assert Task.load(".").name == "my-task"


def test_load_missing_directory(tmp_path):
    with pytest.raises(TaskError) as info:
        Task.load(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)


def test_load_missing_task_toml_names_the_file(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    (root / "instruction.md").write_text("x")
    with pytest.raises(TaskError) as info:
        Task.load(root)
    assert info.value.path == root / "task.toml"
    assert str(root / "task.toml") in str(info.value)
    assert "missing" in str(info.value)
    assert "Terminal-Bench 1" not in str(info.value)


def test_load_tb1_task_gives_the_import_hint(tmp_path):
    root = tmp_path / "tb1"
    root.mkdir()
    (root / "task.yaml").write_text("instruction: do it\n")
    with pytest.raises(TaskError) as info:
        Task.load(root)
    assert info.value.path == root / "task.toml"
    assert "Terminal-Bench 1" in str(info.value)
    assert "ttgen tasks import-tb1" in str(info.value)


def test_load_toml_syntax_error_gives_file_and_line(tmp_path):
    root = write_task(tmp_path / "t", toml='schema_version = "1.2"\n[environment\ncpus = 1\n')
    with pytest.raises(TaskError) as info:
        Task.load(root)
    assert info.value.path == root / "task.toml"
    assert "line 2" in str(info.value)
    assert "TOML" in str(info.value)


def test_load_task_toml_not_utf8(tmp_path):
    root = write_task(tmp_path / "t")
    (root / "task.toml").write_bytes(b'[metadata]\nauthor = "\xff\xfe"\n')
    with pytest.raises(TaskError) as info:
        Task.load(root)
    assert info.value.path == root / "task.toml"
    assert "UTF-8" in str(info.value)


def test_load_instruction_missing(tmp_path):
    root = write_task(tmp_path / "t", instruction=None)
    with pytest.raises(TaskError) as info:
        Task.load(root)
    assert info.value.path == root / "instruction.md"
    assert "missing" in str(info.value)


def test_load_instruction_not_utf8(tmp_path):
    root = write_task(tmp_path / "t", instruction=b"caf\xe9 au lait\n")
    with pytest.raises(TaskError) as info:
        Task.load(root)
    assert info.value.path == root / "instruction.md"
    assert "UTF-8" in str(info.value)
    assert "byte 3" in str(info.value)


@pytest.mark.parametrize("text", ["", "   \n\n\t\n"])
def test_load_instruction_empty(tmp_path, text):
    root = write_task(tmp_path / "t", instruction=text)
    with pytest.raises(TaskError) as info:
        Task.load(root)
    assert info.value.path == root / "instruction.md"
    assert "empty" in str(info.value)


def test_load_instruction_is_a_directory(tmp_path):
    root = write_task(tmp_path / "t", instruction=None)
    (root / "instruction.md").mkdir()
    with pytest.raises(TaskError) as info:
        Task.load(root)
    assert info.value.path == root / "instruction.md"


def test_task_properties_point_at_files(tmp_path):
    root = write_task(tmp_path / "t", toml='[environment]\nworkdir = "/work"\n')
    assert Task.load(root).dockerfile is None
    (root / "environment").mkdir()
    (root / "environment" / "Dockerfile").write_text("FROM x\n")
    (root / "tests").mkdir()
    (root / "tests" / "test.sh").write_text("true\n")
    task = Task.load(root)
    assert task.dockerfile == root / "environment" / "Dockerfile"
    assert task.test_script == root / "tests" / "test.sh"
    assert task.solve_script is None
    assert task.environment_dir == root / "environment"
    assert task.workdir == "/work"


# -- Task.save --------------------------------------------------------------------------------


def full_task(root: Path) -> Path:
    write_task(root, toml=REGISTRY_11, instruction="Solve it.\n")
    (root / "environment").mkdir()
    (root / "environment" / "Dockerfile").write_text("FROM ubuntu:24.04\nWORKDIR /app\n")
    (root / "environment" / "data").mkdir()
    (root / "environment" / "data" / "blob.bin").write_bytes(bytes(range(256)))
    (root / "solution").mkdir()
    (root / "solution" / "solve.sh").write_text("#!/bin/sh\necho solved\n")
    (root / "solution" / "solve.sh").chmod(0o755)
    (root / "tests").mkdir()
    (root / "tests" / "test.sh").write_text("#!/bin/sh\necho 1 > /logs/verifier/reward.txt\n")
    (root / "tests" / "test.sh").chmod(0o755)
    (root / "tests" / "test_outputs.py").write_text("def test(): pass\n")
    (root / "tests" / "test_outputs.py").chmod(0o644)
    return root


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in ("task.toml",)
    }


def test_save_to_a_new_path_copies_everything(tmp_path):
    src = full_task(tmp_path / "src")
    task = Task.load(src)
    dest = tmp_path / "out" / "deeper" / "copy"
    returned = task.save(dest)
    assert returned == dest.absolute()
    assert task.path == dest.absolute()
    assert tree(dest) == tree(src)
    assert (dest / "instruction.md").read_text() == "Solve it.\n"
    assert tomllib.loads((dest / "task.toml").read_text()) == tomllib.loads(REGISTRY_11)
    assert is_executable(dest / "solution" / "solve.sh")
    assert is_executable(dest / "tests" / "test.sh")
    assert not is_executable(dest / "tests" / "test_outputs.py")
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    # The source is left as it was.
    assert tree(src) == tree(dest)
    assert Task.load(dest).config == Task.load(src).config


def test_save_writes_edited_instruction_and_config(tmp_path):
    src = full_task(tmp_path / "src")
    task = Task.load(src)
    task.instruction = "New words.\n"
    task.config.metadata["difficulty"] = "easy"
    task.save()
    again = Task.load(src)
    assert again.instruction == "New words.\n"
    assert again.config.metadata["difficulty"] == "easy"
    assert (src / "environment" / "data" / "blob.bin").read_bytes() == bytes(range(256))


def test_save_over_an_existing_task_replaces_it(tmp_path):
    src = full_task(tmp_path / "src")
    dest = tmp_path / "dest"
    write_task(dest, toml='[task]\nname = "org/old"\n', instruction="old\n")
    (dest / "stale.txt").write_text("left over")
    (dest / "tests").mkdir()
    (dest / "tests" / "old_test.py").write_text("old")
    Task.load(src).save(dest)
    assert not (dest / "stale.txt").exists()
    assert not (dest / "tests" / "old_test.py").exists()
    assert Task.load(dest).instruction == "Solve it.\n"
    assert Task.load(dest).name == "terminal-bench/x"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_save_without_overwrite_refuses_an_existing_path(tmp_path):
    src = full_task(tmp_path / "src")
    dest = write_task(tmp_path / "dest", instruction="keep me\n")
    with pytest.raises(TaskError) as info:
        Task.load(src).save(dest, overwrite=False)
    assert str(dest) in str(info.value)
    assert (dest / "instruction.md").read_text() == "keep me\n"
    # A new path is fine without overwrite.
    Task.load(src).save(tmp_path / "fresh", overwrite=False)
    assert (tmp_path / "fresh" / "instruction.md").read_text() == "Solve it.\n"


def test_save_in_memory_task_with_files(tmp_path):
    cfg = TaskConfig.from_toml('[environment]\ndocker_image = "ttgen/base:bookworm"\n')
    task = Task(
        name="generated",
        instruction="Generated instruction.\n",
        config=cfg,
        files={
            "environment/Dockerfile": "FROM ttgen/base:bookworm\n",
            "tests/test.sh": "#!/bin/sh\necho 1 > /logs/verifier/reward.txt\n",
            "tests/data/input.bin": b"\x00\x01\xff",
            "solution/solve.sh": b"#!/bin/sh\ntrue\n",
            "environment/app/main.py": "print('hi')\n",
        },
    )
    dest = task.save(tmp_path / "generated")
    assert task.files == {}
    assert task.path == dest
    assert (dest / "environment" / "Dockerfile").read_text() == "FROM ttgen/base:bookworm\n"
    assert (dest / "tests" / "data" / "input.bin").read_bytes() == b"\x00\x01\xff"
    assert is_executable(dest / "tests" / "test.sh")
    assert is_executable(dest / "solution" / "solve.sh")
    assert not is_executable(dest / "environment" / "app" / "main.py")
    loaded = Task.load(dest)
    assert loaded.instruction == "Generated instruction.\n"
    assert loaded.config.environment.docker_image == "ttgen/base:bookworm"
    assert loaded.test_script is not None and loaded.solve_script is not None


def test_save_in_memory_task_needs_a_destination(tmp_path):
    task = Task(name="nowhere", instruction="x")
    with pytest.raises(TaskError, match="destination"):
        task.save()


def test_files_override_copied_files(tmp_path):
    src = full_task(tmp_path / "src")
    task = Task.load(src)
    task.files["tests/test.sh"] = "#!/bin/sh\necho 0 > /logs/verifier/reward.txt\n"
    task.save(tmp_path / "copy")
    assert "echo 0" in (tmp_path / "copy" / "tests" / "test.sh").read_text()
    assert "echo 1" in (src / "tests" / "test.sh").read_text()


@pytest.mark.parametrize("bad", ["../x", "tests/../../x", "/tmp/ttgen-escape-test"])
def test_save_rejects_paths_escaping_the_task(tmp_path, bad):
    task = Task(name="evil", instruction="x", files={bad: "pwned"})
    with pytest.raises(TaskError):
        task.save(tmp_path / "evil")
    assert not (tmp_path / "x").exists()
    assert not Path("/tmp/ttgen-escape-test").exists()
    assert not (tmp_path / "evil").exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_save_leaves_the_old_task_untouched(tmp_path, monkeypatch):
    src = full_task(tmp_path / "tasks" / "t")
    before = tree(src)
    before_toml = (src / "task.toml").read_bytes()
    task = Task.load(src)
    task.instruction = "Half-written.\n"

    def boom(self):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ttgen.task.TaskConfig, "to_toml", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        task.save()
    assert tree(src) == before
    assert (src / "task.toml").read_bytes() == before_toml
    assert sorted(p.name for p in (tmp_path / "tasks").iterdir()) == ["t"]
    assert task.path == src


def test_failed_save_to_a_new_path_leaves_nothing(tmp_path, monkeypatch):
    src = full_task(tmp_path / "src")
    task = Task.load(src)
    monkeypatch.setattr(ttgen.task.TaskConfig, "to_toml", lambda self: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        task.save(tmp_path / "out" / "new")
    assert list((tmp_path / "out").iterdir()) == []


def test_failed_rename_restores_the_old_task(tmp_path, monkeypatch):
    src = full_task(tmp_path / "tasks" / "t")
    before = tree(src)
    real_rename = os.rename
    calls = []

    def flaky_rename(a, b):
        calls.append((Path(a).name, Path(b).name))
        if len(calls) == 2:  # the new directory into place
            raise OSError("rename failed")
        return real_rename(a, b)

    monkeypatch.setattr(ttgen.task.os, "rename", flaky_rename)
    task = Task.load(src)
    task.instruction = "new\n"
    with pytest.raises(OSError, match="rename failed"):
        task.save()
    monkeypatch.undo()
    assert tree(src) == before
    assert sorted(p.name for p in (tmp_path / "tasks").iterdir()) == ["t"]


# -- find_tasks -------------------------------------------------------------------------------


def test_find_tasks_single_task(tmp_path):
    root = write_task(tmp_path / "one")
    assert find_tasks([root]) == [root]


def test_find_tasks_folder_of_tasks_sorted(tmp_path):
    for name in ("c", "a", "b"):
        write_task(tmp_path / "suite" / name)
    (tmp_path / "suite" / "empty-dir").mkdir()
    (tmp_path / "suite" / "README.md").write_text("not a task")
    assert find_tasks([tmp_path / "suite"]) == [tmp_path / "suite" / n for n in ("a", "b", "c")]


def test_find_tasks_nested_and_hidden(tmp_path):
    suite = tmp_path / "suite"
    write_task(suite / "group1" / "t1")
    write_task(suite / "group1" / "sub" / "t2")
    write_task(suite / "group2" / "t3")
    write_task(suite / ".hidden" / "t4")
    write_task(suite / "group2" / ".cache" / "t5")
    # A TB1 task (task.yaml only) is still found, so that check can report it.
    (suite / "tb1").mkdir()
    (suite / "tb1" / "task.yaml").write_text("instruction: x\n")
    found = find_tasks([suite])
    assert found == sorted(
        [
            suite / "group1" / "t1",
            suite / "group1" / "sub" / "t2",
            suite / "group2" / "t3",
            suite / "tb1",
        ]
    )


def test_find_tasks_several_paths_without_duplicates(tmp_path):
    a = write_task(tmp_path / "suite" / "a")
    b = write_task(tmp_path / "suite" / "b")
    assert find_tasks([b, tmp_path / "suite", a]) == [a, b]


def test_find_tasks_respects_max_depth(tmp_path):
    deep = write_task(tmp_path / "l1" / "l2" / "l3" / "task")
    assert find_tasks([tmp_path / "l1"], max_depth=3) == [deep]
    assert find_tasks([tmp_path / "l1"], max_depth=2) == []


def test_find_tasks_missing_path_raises(tmp_path):
    with pytest.raises(TaskError) as info:
        find_tasks([tmp_path / "missing"])
    assert str(tmp_path / "missing") in str(info.value)


def test_find_tasks_file_path_raises(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(TaskError, match="not a directory"):
        find_tasks([f])
