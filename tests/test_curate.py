"""Curation: trial folders → records with provenance; decontamination, filters and near-duplicate
removal as a user sees them in DATA/ (records.jsonl, dropped.jsonl, curate.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ttgen.curate.curator import BenchmarkSpec, CurateError, CurateOptions, curate
from ttgen.curate.filters import FilterOptions, Filters
from ttgen.curate.trials import find_trials, normalize_messages, read_trial
from ttgen.formats.trial import Outcome
from ttgen.testing.trials import conversation, terminus_turn, write_trial

ADAPTER = {"source": "adapter", "adapter": "math", "dataset": "m.jsonl"}
SKILL = {"source": "skill_synth", "domain": "security", "difficulty": "medium"}
SEED = {"source": "seed_synth", "domain": "data_processing"}

INSTRUCTIONS = {
    "sum-csv": "Read the file /app/data.csv, add up the amount column for every region and write "
    "one line per region with its total to /app/totals.txt, sorted by region name.",
    "fix-cron": "The nightly backup job in /etc/cron.d/backup never runs. Find out why the cron "
    "entry is ignored, repair it without changing the schedule, and record the cause in "
    "/app/cause.txt as a single sentence.",
    "prime-sum": "Find the sum of all prime numbers below two thousand and explain the method you "
    "used in a short paragraph before giving the final number.",
}


def _turns(n: int = 2, extra: str = "") -> list[str]:
    turns = [terminus_turn(f"ls -la {extra}\n", think="I should look around first.")]
    turns += [terminus_turn("", complete=True, think="Done.")] * (n - 1)
    return turns


def _job(tmp_path: Path) -> Path:
    """A job folder with trials of every kind a curation must handle."""
    job = tmp_path / "job"
    t = INSTRUCTIONS
    write_trial(
        job,
        "sum-csv__0",
        task="sum-csv",
        task_metadata=SKILL,
        messages=conversation(t["sum-csv"], _turns()),
    )
    write_trial(
        job,
        "sum-csv__1",
        task="sum-csv",
        task_metadata=SKILL,
        reward=0.0,
        outcome=Outcome.FAILED,
        task_complete=False,
        messages=conversation(t["sum-csv"], _turns(3)),
    )
    write_trial(
        job,
        "fix-cron__0",
        task="fix-cron",
        task_metadata=SEED,
        reward=0.5,
        outcome=Outcome.FAILED,
        messages=conversation(t["fix-cron"], _turns()),
    )
    write_trial(
        job,
        "prime-sum__0",
        task="prime-sum",
        task_metadata=ADAPTER,
        reward=None,
        outcome=Outcome.UNVERIFIED,
        messages=conversation(t["prime-sum"], _turns()),
    )
    # never data: an infrastructure outcome, an agent without messages, an unfinished trial
    write_trial(
        job,
        "prime-sum__1",
        task="prime-sum",
        task_metadata=ADAPTER,
        reward=None,
        outcome=Outcome.LLM_ERROR,
        exception=("LLMError", "503 upstream overloaded"),
        messages=conversation(t["prime-sum"], _turns()),
    )
    write_trial(
        job,
        "fix-cron__nop",
        task="fix-cron",
        agent="nop",
        model="",
        messages=None,
        reward=0.0,
        outcome=Outcome.FAILED,
    )
    (job / "sum-csv__2").mkdir()
    (job / "sum-csv__2" / "config.json").write_text(json.dumps({"trial_name": "sum-csv__2"}))
    return job  # fmt: skip


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_records_carry_provenance_and_infrastructure_outcomes_never_become_data(tmp_path):
    job = _job(tmp_path)
    out = tmp_path / "data"
    manifest = curate([job], out, CurateOptions(decontaminate=False))
    records = {r["id"]: r for r in _read(out / "records.jsonl")}
    assert sorted(records) == ["job1/fix-cron__0", "job1/prime-sum__0", "job1/sum-csv__0",
                               "job1/sum-csv__1"]  # fmt: skip
    r = records["job1/sum-csv__0"]
    # the record's contract (formats/record.py): these fields, in this order
    from ttgen.formats.record import OPTIONAL_RECORD_FIELDS, RECORD_FIELDS

    for rec in records.values():
        assert tuple(k for k in rec if k not in OPTIONAL_RECORD_FIELDS) == RECORD_FIELDS
    assert (r["subset"], r["domain"], r["difficulty"], r["source"]) == (
        "skill_based", "security", "medium", "skill_based/medium/security")  # fmt: skip
    assert r["instruction"] == INSTRUCTIONS["sum-csv"]  # from the prompt: no task folder here
    assert (r["model"], r["model_provider"], r["agent"]) == (
        "deepseek-ai/DeepSeek-V3.2", "hosted_vllm", "terminus-2")  # fmt: skip
    assert (r["reward"], r["outcome"], r["completed"], r["n_turns"]) == (1.0, "passed", True, 2)
    assert r["enable_thinking"] is True and r["messages"][1]["content"].startswith("<think>")
    assert records["job1/sum-csv__1"]["completed"] is False
    assert records["job1/fix-cron__0"]["source"] == "seed_based/data_processing"
    p = records["job1/prime-sum__0"]
    assert (p["subset"], p["domain"], p["source"], p["reward"], p["outcome"]) == (
        "dataset_adapters", "math", "dataset_adapters/math", None, "unverified")  # fmt: skip

    dropped = {d["id"]: d for d in _read(out / "dropped.jsonl")}
    assert dropped["job1/prime-sum__1"]["reason"] == "infrastructure"
    assert "503 upstream overloaded" in dropped["job1/prime-sum__1"]["detail"]
    assert dropped["job1/fix-cron__nop"]["reason"] == "no_conversation"
    assert any(d["reason"] == "unfinished" and d["id"].endswith("sum-csv__2")
               for d in dropped.values())  # fmt: skip
    assert manifest["counts"] == {"trials": 7, "records_in": 4, "kept": 4, "dropped": 3,
                                  "distinct_instructions": 3}  # fmt: skip
    assert manifest["dropped"] == {"infrastructure": 1, "no_conversation": 1, "unfinished": 1}
    assert json.loads((out / "curate.json").read_text()) == manifest


def test_task_folder_metadata_and_instruction_are_used_when_present(tmp_path):
    task = tmp_path / "tasks" / "t1"
    task.mkdir(parents=True)
    (task / "instruction.md").write_text("The real instruction, from the task folder.\n")
    (task / "task.toml").write_text('[metadata]\nsource = "adapter"\nadapter = "swe"\n')
    job = tmp_path / "job"
    write_trial(job, "t1__0", task="t1", task_path=str(task), reward=None,
                outcome=Outcome.UNVERIFIED, messages=conversation("prompt copy", _turns()))  # fmt: skip
    records, drops = read_trial(job / "t1__0")
    assert not drops
    assert records[0]["instruction"] == "The real instruction, from the task folder.\n"
    assert records[0]["source"] == "dataset_adapters/swe"


def test_the_instruction_recorded_with_the_trial_comes_first(tmp_path):
    """result.json's `instruction` (exactly what the agent was given) comes before the task
    folder's instruction.md (which may have changed since) and the prompt's text (which only
    Terminus 2's templates frame); trials of earlier releases and of Harbor record none."""
    task = tmp_path / "tasks" / "t1"
    task.mkdir(parents=True)
    (task / "instruction.md").write_text("Edited after the run.\n")
    given = "Fix the nightly job.\n"
    prompt = [{"role": "user", "content": f"Another agent's prompt: {given}"}]
    job = tmp_path / "job"
    write_trial(job, "t1__0", task="t1", task_path=str(task),
                messages=prompt + conversation(given, _turns())[1:])  # fmt: skip
    path = job / "t1__0" / "result.json"
    data = json.loads(path.read_text())
    assert data["instruction"] is None  # none recorded: the task folder's
    assert read_trial(job / "t1__0")[0][0]["instruction"] == "Edited after the run.\n"
    path.write_text(json.dumps({**data, "instruction": given}))
    assert read_trial(job / "t1__0")[0][0]["instruction"] == given
    (task / "instruction.md").unlink()
    assert read_trial(job / "t1__0")[0][0]["instruction"] == given
    del data["instruction"]  # as Harbor writes it; no template in the prompt either
    path.write_text(json.dumps(data))
    assert read_trial(job / "t1__0")[0][0]["instruction"] == ""


def test_summarized_contexts_become_records_and_conversations_are_normalized(tmp_path):
    instr = INSTRUCTIONS["fix-cron"]
    earlier = conversation(instr, _turns(3))
    earlier.append({"role": "user", "content": "an observation nobody answered"})
    final = [
        earlier[0],
        {"role": "user", "content": "You are picking up work from a previous AI agent..."},
        {"role": "assistant", "content": "Questions: 1. what is in /etc/cron.d?"},
        {"role": "user", "content": "Here are the answers..."},
        {"role": "assistant", "content": terminus_turn("", complete=True)},
    ]
    job = tmp_path / "job"
    write_trial(job, "fix-cron__0", task="fix-cron", task_metadata=SEED, messages=final,
                contexts=[earlier])  # fmt: skip
    records, _ = read_trial(job / "fix-cron__0")
    assert [r["id"] for r in records] == ["job1/fix-cron__0#ctx1", "job1/fix-cron__0"]
    first, last = records
    assert first["messages"][-1]["role"] == "assistant"  # the unanswered observation is gone
    assert (first["completed"], first["ended"], first["context"], first["n_contexts"]) == (
        False, "summarized", 0, 2)  # fmt: skip
    # the handoff's two user turns in a row are merged: roles alternate
    roles = [m["role"] for m in last["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert last["messages"][0]["content"].endswith(
        "You are picking up work from a previous AI agent..."
    )
    assert last["completed"] is True and last["instruction"] == instr


def test_normalize_messages_rejects_what_is_not_a_conversation():
    with pytest.raises(ValueError, match="not a list"):
        normalize_messages({"role": "user"})
    with pytest.raises(ValueError, match="message 1 has no role"):
        normalize_messages([{"role": "user", "content": "x"}, {"content": "y"}])
    with pytest.raises(ValueError, match="unknown role 'tool'"):
        normalize_messages([{"role": "tool", "content": "x"}])
    msgs = normalize_messages([
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": None},
    ])  # fmt: skip
    assert msgs == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": ""}]  # fmt: skip


def test_a_broken_messages_file_is_named_and_the_batch_goes_on(tmp_path):
    job = _job(tmp_path)
    (job / "fix-cron__0" / "agent" / "messages.json").write_text("[{not json")
    manifest = curate([job], tmp_path / "data", CurateOptions(decontaminate=False))
    dropped = {d["id"]: d for d in _read(tmp_path / "data" / "dropped.jsonl")}
    assert dropped["job1/fix-cron__0"]["reason"] == "unreadable"
    assert dropped["job1/fix-cron__0"]["detail"].startswith("messages.json: ")
    assert manifest["counts"]["kept"] == 3


# -- decontamination -----------------------------------------------------------------------------

BENCH_INSTRUCTION = (
    "Configure the web server so that it serves the static site from the folder named public and "
    "answers every request for a missing page with the custom error document stored alongside it."
)


def _bench(tmp_path: Path) -> Path:
    bench = tmp_path / "tb2"
    for name, text in (("serve-site", BENCH_INSTRUCTION),
                       ("other", "Compile the kernel module and load it.")):  # fmt: skip
        (bench / name / "tests").mkdir(parents=True)
        (bench / name / "instruction.md").write_text(text)
        (bench / name / "tests" / "test.sh").write_text(
            "#!/bin/bash\necho 1 > /logs/verifier/reward.txt\n"
        )
    return bench


def test_a_planted_benchmark_14_gram_is_caught_and_nothing_else(tmp_path):
    words = BENCH_INSTRUCTION.split()
    planted = " ".join(words[3:17])  # 14 words of the benchmark item
    near_miss = " ".join(words[3:16])  # 13 words
    job = tmp_path / "job"
    for attempt in range(2):
        write_trial(job, f"planted__{attempt}", task="planted", task_metadata=SKILL,
                    messages=conversation(f"First, {planted.upper()}; then report back.",
                                          _turns()))  # fmt: skip
    write_trial(
        job,
        "near__0",
        task="near",
        task_metadata=SKILL,
        messages=conversation(f"Please {near_miss}, then stop there.", _turns()),
    )
    write_trial(job, "clean__0", task="clean", task_metadata=ADAPTER,
                messages=conversation(INSTRUCTIONS["prime-sum"], _turns()))  # fmt: skip
    out = tmp_path / "data"
    manifest = curate(
        [job], out, CurateOptions(benchmarks=[BenchmarkSpec(_bench(tmp_path), "tb2")])
    )
    kept = [r["id"] for r in _read(out / "records.jsonl")]
    assert kept == ["job1/clean__0", "job1/near__0"]
    dropped = _read(out / "dropped.jsonl")
    assert [d["id"] for d in dropped] == ["job1/planted__0", "job1/planted__1"]
    assert all(d["reason"] == "decontamination" for d in dropped)
    expected = " ".join(w.lower().strip(",.") for w in planted.split())
    assert dropped[0]["detail"] == f'tb2/serve-site (instruction): "{expected}"'
    d = manifest["decontamination"]
    assert (d["tasks_matched"], d["records_dropped"], d["ngram"]) == (1, 2, 14)
    assert d["matches_by_item"] == {"tb2/serve-site": 2}
    assert d["items"] == 2


def test_decontamination_needs_a_benchmark_or_an_explicit_opt_out(tmp_path):
    job = _job(tmp_path)
    with pytest.raises(CurateError, match=r"--benchmark PATH.*or --no-decontam"):
        curate([job], tmp_path / "data", CurateOptions())
    with pytest.raises(CurateError, match="nothing-here"):
        curate([job], tmp_path / "data",
               CurateOptions(benchmarks=[BenchmarkSpec(tmp_path / "nothing-here")]))  # fmt: skip
    assert not (tmp_path / "data" / "records.jsonl").exists()


# -- filters ---------------------------------------------------------------------------------------


def _rec(messages, **kw):
    base = {"id": "r", "completed": True, "outcome": "passed", "reward": 1.0, "n_turns": 1,
            "n_tokens": 100, "messages": messages}  # fmt: skip
    return {**base, **kw}


def _chat(assistant: str, user: str = "Task: do it") -> list[dict]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


@pytest.mark.parametrize(
    "text",
    [
        "<think>I am DeepSeek, so I will start.</think> {}",
        "Hello! I'm an AI assistant called Claude. Let me check.",
        "<think>As an AI developed by OpenAI I cannot</think>",
        "I was trained by Anthropic, and now I run ls.",
        "my name is Qwen and I will fix this",
    ],
)
def test_identity_leaks_in_assistant_turns_are_dropped(text):
    assert Filters(FilterOptions()).check(_rec(_chat(text)))[0] == "identity"


@pytest.mark.parametrize(
    "text",
    [
        "I'll install the deepseek client library with pip.",
        "The model file llama-7b.gguf is in /models; I am going to load it.",
        "I am done: the service now answers on port 8080.",
    ],
)
def test_ordinary_mentions_of_models_are_not_identity_leaks(text):
    assert Filters(FilterOptions()).check(_rec(_chat(text))) is None


def test_identity_only_looks_at_assistant_turns_and_takes_extra_patterns():
    f = Filters(FilterOptions())
    assert f.check(_rec(_chat("ok", user="Output: I am DeepSeek, your assistant"))) is None
    custom = FilterOptions(identity_patterns=[r"\bnemotron\b"])
    assert Filters(custom).check(_rec(_chat("Nemotron here")))[0] == "identity"
    with pytest.raises(ValueError, match="bad identity pattern"):
        Filters(FilterOptions(identity_patterns=["(unclosed"]))
    assert Filters(FilterOptions(identity=False)).check(_rec(_chat("I am DeepSeek"))) is None


def test_cjk_in_assistant_turns_is_dropped_unless_echoed_when_allowed():
    f = Filters(FilterOptions())
    reason, detail = f.check(_rec(_chat("<think>好的\uff0c我来看看</think> ls")))
    assert reason == "cjk" and "好的" in detail
    assert f.check(_rec(_chat("ls", user="文件名是 数据.csv"))) is None  # user turns may hold CJK
    assert f.check(_rec(_chat("こんにちは")))[0] == "cjk"
    assert f.check(_rec(_chat("안녕하세요")))[0] == "cjk"
    echo = Filters(FilterOptions(cjk_allow_echo=True))
    assert echo.check(_rec(_chat("cat 数据.csv", user="文件名是 数据.csv"))) is None
    assert echo.check(_rec(_chat("cat 数据.csv 好", user="文件名是 数据.csv")))[0] == "cjk"
    assert Filters(FilterOptions(cjk=False)).check(_rec(_chat("好的"))) is None


def test_complete_success_turn_and_token_filters_are_off_by_default():
    default = Filters(FilterOptions())
    failing = _rec(_chat("x"), completed=False, outcome="failed", reward=0.0, n_turns=99,
                   n_tokens=10**6)  # fmt: skip
    assert default.check(failing) is None
    assert Filters(FilterOptions(complete_only=True)).check(failing)[0] == "complete_only"
    assert Filters(FilterOptions(success_only=True)).check(failing)[0] == "success_only"
    partial = _rec(_chat("x"), outcome="failed", reward=0.5)
    assert Filters(FilterOptions(success_only=True)).check(partial)[0] == "success_only"
    # tasks without tests have nothing to pass: kept, as in the paper
    unverified = _rec(_chat("x"), outcome="unverified", reward=None)
    assert Filters(FilterOptions(success_only=True)).check(unverified) is None
    assert Filters(FilterOptions(max_turns=98)).check(failing)[0] == "max_turns"
    assert Filters(FilterOptions(max_turns=99)).check(failing) is None
    assert Filters(FilterOptions(max_tokens=5000)).check(failing) == (
        "max_tokens", "1000000 tokens > 5000")  # fmt: skip


def test_filters_end_up_in_dropped_and_the_manifest(tmp_path):
    job = tmp_path / "job"
    write_trial(
        job,
        "a__0",
        task="a",
        task_metadata=SKILL,
        messages=conversation(INSTRUCTIONS["sum-csv"], [terminus_turn("ls\n", think="我先看看")]),
    )
    write_trial(
        job,
        "b__0",
        task="b",
        task_metadata=SKILL,
        task_complete=False,
        messages=conversation(INSTRUCTIONS["fix-cron"], _turns()),
    )
    write_trial(job, "c__0", task="c", task_metadata=ADAPTER, reward=None, outcome=Outcome.UNVERIFIED,
                messages=conversation(INSTRUCTIONS["prime-sum"], _turns()))  # fmt: skip
    opts = CurateOptions(decontaminate=False, filters=FilterOptions(complete_only=True))
    manifest = curate([job], tmp_path / "data", opts)
    assert manifest["dropped"] == {"cjk": 1, "complete_only": 1}
    assert [r["id"] for r in _read(tmp_path / "data" / "records.jsonl")] == ["job1/c__0"]
    assert manifest["options"]["filters"]["complete_only"] is True


# -- near-duplicates -------------------------------------------------------------------------------


def test_near_duplicate_tasks_keep_one_per_cluster_with_all_its_trajectories(tmp_path):
    base = ("Write a Python script /app/rollup.py that reads the sensor readings in /app/in.csv, "
            "computes the hourly mean per sensor, skips rows with a missing value, and writes the "
            "result as JSON lines to /app/out.jsonl, sorted by sensor and hour.")  # fmt: skip
    reworded = base.replace("sorted by sensor and hour.", "sorted by sensor then hour.")
    job = tmp_path / "job"
    for name, text in (("orig", base), ("copy", reworded), ("same", base),
                       ("other", INSTRUCTIONS["fix-cron"])):  # fmt: skip
        for attempt in range(2):
            write_trial(job, f"{name}__{attempt}", task=name, task_metadata=SKILL,
                        messages=conversation(text, _turns()))  # fmt: skip
    out = tmp_path / "data"
    manifest = curate([job], out, CurateOptions(decontaminate=False, dedup_threshold=0.8))
    kept = [r["task"] for r in _read(out / "records.jsonl")]
    # trials are read in name order: "copy" comes first and stands for its cluster
    assert kept == ["copy", "copy", "other", "other"]
    dropped = _read(out / "dropped.jsonl")
    assert {d["task"] for d in dropped} == {"orig", "same"}
    assert all(d["reason"] == "near_duplicate" for d in dropped)
    assert {d["detail"] for d in dropped} == {"similar to task copy (Jaccard 0.905)"}
    assert manifest["dedup"] == {"enabled": True, "tasks_kept": 2, "tasks_dropped": 2,
                                 "records_dropped": 4}  # fmt: skip
    strict = curate([job], tmp_path / "d2", CurateOptions(decontaminate=False, dedup_threshold=1.0))
    assert strict["counts"]["kept"] == 6  # only the identical instruction ("same") goes
    assert {d["detail"] for d in _read(tmp_path / "d2" / "dropped.jsonl")} == {
        "same instruction as task orig (Jaccard 1.000)"
    }
    loose = curate([job], tmp_path / "d3", CurateOptions(decontaminate=False, dedup=False))
    assert loose["counts"]["kept"] == 8


def test_problems_that_differ_in_a_number_are_never_near_duplicates(tmp_path):
    """Two math problems that differ only in one number have different answers: both stay, for
    synthesized tasks too. Adapter tasks are not near-deduplicated by default (as in the
    paper); `dedup_adapters` turns it on, and the number rule still holds there."""
    ca15 = ("In triangle ABC, AB = 13, BC = 14 and CA = 15. Find the area of the triangle. Work "
            "in the terminal: compute the area with a short Python or awk program of your own, "
            "check it with Heron's formula, and write the area as a single integer, with no "
            "other text, to /app/answer.txt.")  # fmt: skip
    ca16 = ca15.replace("CA = 15", "CA = 16")  # Jaccard 0.82 to ca15: a near-duplicate by words
    reworded = ca15.replace("with no other text", "and no other text")  # Jaccard 0.82 too
    job = tmp_path / "job"
    for meta, prefix in ((ADAPTER, "ad"), (SKILL, "sk")):
        for name, text in (("15", ca15), ("16", ca16), ("15b", reworded)):
            write_trial(job, f"{prefix}-{name}__0", task=f"{prefix}-{name}", task_metadata=meta,
                        messages=conversation(text, _turns()))  # fmt: skip
    m = curate([job], tmp_path / "d", CurateOptions(decontaminate=False))
    kept = sorted(r["task"] for r in _read(tmp_path / "d" / "records.jsonl"))
    # adapters: all three stay; synthesized: CA = 16 stays, the reworded CA = 15 goes
    assert kept == ["ad-15", "ad-15b", "ad-16", "sk-15", "sk-16"]
    assert [(d["task"], d["reason"]) for d in _read(tmp_path / "d" / "dropped.jsonl")] == [
        ("sk-15b", "near_duplicate")]  # fmt: skip
    assert m["options"]["dedup_adapters"] is False
    m = curate([job], tmp_path / "d2", CurateOptions(decontaminate=False, dedup_adapters=True))
    kept = sorted(r["task"] for r in _read(tmp_path / "d2" / "records.jsonl"))
    # now the adapters' reworded CA = 15 goes too, and the synthesized copies of the same
    # problems go as duplicates of the adapter tasks read before them; CA = 16 stays
    assert kept == ["ad-15", "ad-16"]


def test_trials_are_found_in_jobs_folders_of_jobs_and_single_trials(tmp_path):
    job = _job(tmp_path)
    names = [p.name for p in find_trials([tmp_path])]
    assert names == sorted(names) and len(names) == 7
    assert [p.name for p in find_trials([job / "sum-csv__0"])] == ["sum-csv__0"]
    # the same trial named twice is read once
    assert len(list(find_trials([job, job / "sum-csv__0"]))) == 7
    with pytest.raises(FileNotFoundError, match="nope"):
        list(find_trials([tmp_path / "nope"]))


def test_an_interrupted_curation_leaves_the_previous_output(tmp_path, monkeypatch):
    job = _job(tmp_path)
    out = tmp_path / "data"
    curate([job], out, CurateOptions(decontaminate=False))
    before = (out / "records.jsonl").read_text()
    import ttgen.curate.curator as pipeline

    def boom(_trial):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "read_trial", boom)
    with pytest.raises(KeyboardInterrupt):
        curate([job], out, CurateOptions(decontaminate=False))
    assert (out / "records.jsonl").read_text() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
