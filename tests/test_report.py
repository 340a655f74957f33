"""`ttgen report`: a pipeline run folder (made without Docker: trial folders written directly, the
real curation run on them) → the figures (collect) → a static page, checked in headless Chromium
(the page's script runs without errors, draws the figures, and the trajectory viewer shows the
turn a URL hash asks for)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ttgen.cli import app
from ttgen.curate.curator import CurateOptions, curate
from ttgen.curate.filters import FilterOptions
from ttgen.formats.trial import Outcome
from ttgen.report import ReportOptions, collect_report, detect_kind, write_report
from ttgen.report.figures import build_trajectory, clip, parse_assistant
from ttgen.report.html import render_html, script_json
from ttgen.testing.trials import conversation, terminus_turn, write_trial

SKILL = {"source": "skill_synth", "domain": "security", "difficulty": "medium"}
SEED = {"source": "seed_synth", "domain": "data_processing"}
ADAPTER = {"source": "adapter", "adapter": "math", "dataset": "m.jsonl"}
# Untrusted text everywhere: nothing of it may become markup.
EVIL = "</script><img src=x onerror=\"document.body.setAttribute('data-pwned','1')\"><b>bold</b>"
INSTRUCTIONS = {
    "sum-csv": "Read /app/data.csv, add up the amount column per region and write the totals to "
    f"/app/totals.txt sorted by region. {EVIL}",
    "fix-cron": "The nightly backup job in /etc/cron.d/backup never runs. Find out why, repair it "
    "without changing the schedule, and write the cause to /app/cause.txt.",
    "prime-sum": "Find the sum of all prime numbers below two thousand and explain the method "
    "before giving the final number.",
}
OUT_1 = "root@box:/app# ls -la\ntotal 8\n-rw-r--r-- 1 root root  42 data.csv\n    indented  line\n"
OUT_2 = f"root@box:/app# cat data.csv\nregion,amount\nnorth,3\n{EVIL}\nroot@box:/app# "
XML_TURN = """<response>
<analysis>The prime sum needs a sieve.</analysis>
<plan>Write a short Python one-liner.</plan>
<commands>
<keystrokes duration="2.5">python3 -c 'print(1)'
</keystrokes>
</commands>
<task_complete>true</task_complete>
</response>"""


def _sum_csv_messages() -> list[dict[str, str]]:
    """Three turns with distinct terminal outputs (the viewer test steps to turn 2)."""
    prompt = conversation(INSTRUCTIONS["sum-csv"], ["x"])[0]
    return [
        prompt,
        {"role": "assistant", "content": terminus_turn("ls -la\n", think="Look at the files.")},
        {"role": "user", "content": f"New Terminal Output:\n{OUT_1}"},
        {"role": "assistant", "content": terminus_turn("cat data.csv\n", think="Read the CSV.")},
        {"role": "user", "content": f"New Terminal Output:\n{OUT_2}"},
        {"role": "assistant", "content": terminus_turn("", complete=True)},
    ]


def _turns(n: int) -> list[str]:
    return [terminus_turn(f"echo step {i}\n", think=f"Step {i}.") for i in range(n - 1)] + [
        terminus_turn("", complete=True)
    ]


def _write_task(root: Path, name: str, meta: dict[str, str]) -> None:
    (root / name).mkdir(parents=True)
    lines = "\n".join(f'{k} = "{v}"' for k, v in meta.items())
    (root / name / "task.toml").write_text(f"[metadata]\n{lines}\n")
    (root / name / "instruction.md").write_text("x\n")


def _rollouts(job: Path) -> dict[str, int]:
    """The rollout trials; returns assistant turns per trial (cost = 0.001 USD per turn)."""
    t = INSTRUCTIONS
    turns: dict[str, int] = {}

    def trial(name: str, messages: list[dict[str, str]] | None, **kw) -> None:
        write_trial(job, name, messages=messages, **kw)
        turns[name] = sum(m["role"] == "assistant" for m in messages or [])

    trial("sum-csv__0", _sum_csv_messages(), task="sum-csv", task_metadata=SKILL)
    trial(
        "sum-csv__1",
        conversation(t["sum-csv"], _turns(4)),
        task="sum-csv",
        task_metadata=SKILL,
        reward=0.0,
        outcome=Outcome.FAILED,
        task_complete=False,
    )
    trial(
        "sum-csv__2",
        conversation(t["sum-csv"], _turns(2)),
        task="sum-csv",
        task_metadata=SKILL,
        reward=0.0,
        outcome=Outcome.AGENT_TIMEOUT,
        task_complete=False,
    )
    trial(
        "fix-cron__0",
        conversation(t["fix-cron"], _turns(2)),
        task="fix-cron",
        task_metadata=SEED,
        reward=0.5,
        outcome=Outcome.FAILED,
    )
    trial(
        "prime-sum__0",
        conversation(t["prime-sum"], [XML_TURN]),
        task="prime-sum",
        task_metadata=ADAPTER,
        reward=None,
        outcome=Outcome.UNVERIFIED,
    )
    trial(
        "prime-sum__1",
        conversation(t["prime-sum"], _turns(2)),
        task="prime-sum",
        task_metadata=ADAPTER,
        reward=None,
        outcome=Outcome.LLM_ERROR,
        exception=("LLMError", "503 upstream overloaded"),
    )
    # the oracle standing in for a teacher: its records are labelled stand_in
    trial(
        "fix-cron__oracle",
        conversation(t["fix-cron"], _turns(2)),
        task="fix-cron",
        task_metadata=SEED,
        agent="oracle",
        model="",
    )
    return turns


def make_run(root: Path, *, validation: bool = True, export: bool = True) -> dict[str, int]:
    run = root / "run"
    tasks = run / "tasks"
    _write_task(tasks / "skill", "sum-csv", SKILL)
    _write_task(tasks / "seed", "fix-cron", SEED)
    _write_task(tasks / "adapters", "prime-sum", ADAPTER)
    _write_task(tasks / "skill", "weak-task", {**SKILL, "difficulty": "easy"})
    _write_task(tasks / "skill", "lazy-task", {**SKILL, "domain": "networking"})
    if validation:
        rows = [
            ("sum-csv", "valid", []),
            ("fix-cron", "valid", []),
            ("prime-sum", "no_tests", ["the task has no tests/"]),
            ("weak-task", "oracle_failed", ["oracle scores 0", "solve.sh exited 2"]),
            ("lazy-task", "trivial", ["nop scores 1"]),
        ]
        (run / "validation").mkdir()
        (run / "validation" / "validation.jsonl").write_text("".join(
            json.dumps({"task": t, "path": f"tasks/{t}", "verdict": v, "reasons": r,
                        "rewards": {}, "outcomes": {}, "trials": {}, "checksum": None}) + "\n"
            for t, v, r in rows))  # fmt: skip
    turns = _rollouts(run / "rollouts")
    curate([run / "rollouts"], run / "curated", CurateOptions(decontaminate=False))
    if export:
        (run / "export").mkdir()
        (run / "export" / "corpus.parquet.export.json").write_text(json.dumps({
            "kind": "export", "format": "corpus", "skipped": 0,
            "outputs": {"corpus.parquet": {"path": str(run / "export" / "corpus.parquet"),
                                           "stage": None, "fraction": None, "rows": 5}},
        }))  # fmt: skip
    stage = {"status": "done", "started_at": "2026-11-01T12:00:00+00:00",
             "finished_at": "2026-11-01T12:05:00+00:00"}  # fmt: skip
    (run / "run.json").write_text(json.dumps({
        "kind": "ttgen-run", "name": "unit-run", "created_at": "2026-11-01T12:00:00+00:00",
        "ttgen_version": "0", "config": {"teacher": {"model": "m"}},
        "stages": {
            "sources": {**stage, "outputs": {"tasks": "tasks"}, "counts": {"generated": 6, "bad": 1}},
            "validation": {**stage, "outputs": {"dir": "validation"}} if validation
            else {"status": "skipped"},
            "rollouts": {**stage, "counts": {"trials": 7}},
            "curation": {**stage, "outputs": {"data": "curated"}},
            "export": {**stage} if export else {"status": "pending"},
            "report": {"status": "pending"},
        },
    }))  # fmt: skip
    return turns


# -- collect --------------------------------------------------------------------------------------


def test_collect_funnel_outcomes_pass_rates_and_cost(tmp_path):
    turns = make_run(tmp_path)
    run = tmp_path / "run"
    assert detect_kind(run) == "run"
    data = collect_report(run)
    assert data["missing"] == []
    steps = {s["key"]: s for s in data["funnel"]}
    assert [s["key"] for s in data["funnel"]] == ["generated", "valid", "rolled_out", "kept"]
    assert steps["generated"]["count"] == 6
    assert steps["generated"]["drops"] == {"rejected by synthesis/adapter checks": 1}
    assert steps["valid"]["count"] == 3  # valid 2 + no_tests 1
    assert steps["valid"]["drops"] == {"oracle_failed": 1, "trivial": 1}
    assert steps["rolled_out"]["count"] == 6 and steps["rolled_out"]["drops"] == {"llm_error": 1}
    assert steps["rolled_out"]["tasks"] == 3
    # every trial with a model outcome became a record; the infrastructure one is shown a step up
    assert steps["kept"]["count"] == 6 and steps["kept"]["drops"] == {}

    r = data["rollouts"]
    assert r["outcomes"] == {"passed": 2, "failed": 2, "agent_timeout": 1, "unverified": 1,
                             "llm_error": 1}  # fmt: skip
    table = {row["outcome"]: row for row in r["outcome_table"]}
    assert table["llm_error"]["infra"] and not table["failed"]["infra"]
    assert table["passed"]["stand_in"] == 1
    assert r["infra_reasons"] == [["llm_error: LLMError", 1]]
    rates = {(row["subset"], row["domain"], row["stand_in"]): row for row in r["by_domain"]}
    sec = rates[("skill_based", "security", False)]
    assert (sec["trials"], sec["scored"], sec["passed"], sec["pass_rate"]) == (3, 3, 1, 0.3333)
    assert rates[("seed_based", "data_processing", False)]["pass_rate"] == 0.0
    oracle = rates[("seed_based", "data_processing", True)]
    assert (oracle["agents"], oracle["pass_rate"]) == (["oracle"], 1.0)
    math = rates[("dataset_adapters", "math", False)]
    assert (math["scored"], math["unverified"], math["infra"], math["pass_rate"]) == (0, 1, 1, None)
    assert (r["scored"], r["passed"], r["pass_rate"]) == (5, 2, 0.4)
    assert (r["teacher_scored"], r["teacher_passed"], r["teacher_pass_rate"]) == (4, 1, 0.25)
    assert r["cost"]["cost_usd"] == pytest.approx(0.001 * sum(turns.values()))
    assert r["cost"]["n_input_tokens"] == 1000 * sum(turns.values())
    assert r["cost"]["n_output_tokens"] == 200 * sum(turns.values())

    kept = data["kept"]
    assert kept["records"] == 6 and kept["by_domain"]["security"] == 3
    assert kept["stand_in"]["records"] == 1 and kept["stand_in"]["agents"] == {"oracle": 1}
    assert sum(kept["turns"]["histogram"]) == 6 and len(kept["turns"]["histogram"]) == 11
    assert len(kept["tokens"]["histogram"]) == 9 and sum(kept["stand_in"]["turns_histogram"]) == 1
    assert data["tasks"]["count"] == 5 and data["tasks"]["by_domain"]["security"] == 2
    assert data["validation"]["verdicts"] == {"valid": 2, "no_tests": 1, "trivial": 1,
                                              "oracle_failed": 1}  # fmt: skip
    assert data["export"]["files"][0]["rows"] == 5
    assert data["stand_in"]["records"] == 1 and data["stand_in"]["trials"] == 1

    items = data["trajectories"]["items"]
    # six kept records, then the one trial that is no record (the LLM error)
    assert [it["kind"] for it in items] == ["record"] * 6 + ["trial"]
    assert items[-1]["outcome"] == "llm_error" and "503" in items[-1]["exception"]
    first = next(it for it in items if it["id"] == "job1/sum-csv__0")
    assert first["n_turns"] == 3 and first["turns"][1]["observation"].endswith(OUT_2)
    assert first["turns"][0]["assistant"]["commands"] == [{"keystrokes": "ls -la\n",
                                                           "duration": 0.1}]  # fmt: skip
    assert next(it for it in items if it["agent"] == "oracle")["stand_in"] is True
    xml = next(it for it in items if it["task"] == "prime-sum" and it["kind"] == "record")
    a = xml["turns"][0]["assistant"]
    assert (a["format"], a["plan"], a["task_complete"]) == (
        "xml",
        "Write a short Python one-liner.",
        True,
    )
    assert a["commands"][0]["duration"] == 2.5
    # deterministic
    assert collect_report(run)["trajectories"]["items"] == items


def test_missing_stages_are_named_and_other_inputs_are_detected(tmp_path):
    make_run(tmp_path, validation=False, export=False)
    run = tmp_path / "run"
    shutil.rmtree(run / "tasks")
    data = collect_report(run)
    assert {m["stage"]: m["status"] for m in data["missing"]} == {
        "sources": "done", "validation": "skipped", "export": "pending"}  # fmt: skip
    steps = {s["key"]: s for s in data["funnel"]}
    assert steps["generated"]["count"] == 6  # run.json still says so
    assert steps["valid"]["count"] is None

    assert detect_kind(run / "rollouts") == "rollouts"
    only = collect_report(run / "rollouts")
    assert only["kept"] is None and only["rollouts"]["trials"] == 7
    assert [it["kind"] for it in only["trajectories"]["items"]] == ["trial"] * 7

    assert detect_kind(run / "curated") == "curated"
    cur = collect_report(run / "curated", ReportOptions(max_trajectories=2))
    assert cur["rollouts"] is None and cur["kept"]["records"] == 6
    assert len(cur["trajectories"]["items"]) == 2

    (run / "run.json").unlink()  # the stage folders alone make a run
    assert detect_kind(run) == "run"
    stages = collect_report(run, ReportOptions(max_trajectories=0))["run"]["stages"]
    assert stages["rollouts"] == {"status": "found"} and stages["export"] == {"status": "missing"}

    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="not a run folder"):
        collect_report(tmp_path / "empty")


def test_long_trajectories_are_cut_to_fit():
    long_out = "x" * 50_000
    msgs = [{"role": "user", "content": "prompt"}]
    for i in range(300):
        msgs.append(
            {"role": "assistant", "content": terminus_turn(f"echo {i}\n", think="t" * 9000)}
        )
        msgs.append({"role": "user", "content": long_out})
    options = ReportOptions(max_chars=4000, max_turns=60, trajectory_bytes=64_000)
    traj = build_trajectory({"id": "a", "kind": "trial"}, msgs, options)
    assert len(json.dumps(traj)) <= 64_000
    assert traj["n_turns"] == 300 and traj["omitted_turns"] > 0 and traj["chars_cut"] > 0
    assert traj["turns"][0]["n"] == 1 and traj["turns"][-1]["n"] == 300
    assert "characters cut by the report" in traj["turns"][0]["observation"]
    text, cut = clip("abcdefghij", 6)
    assert text.startswith("abcd") and text.endswith("ij") and cut == 4


def test_parse_assistant_keeps_text_that_is_no_action():
    a = parse_assistant("<think>why</think>\n\nQuestions: 1. what is in /etc?")
    assert (a["think"], a["format"], a["text"]) == ("why", "text", "Questions: 1. what is in /etc?")
    assert "error" not in a
    bad = parse_assistant('{"analysis": "x", "plan": ')
    assert bad["format"] == "text" and bad["error"]


def test_script_json_cannot_close_the_script_block():
    text = script_json({"a": EVIL, "b": "<!-- <script>", "c": float("nan")})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": EVIL, "b": "<!-- <script>", "c": None}
    page = render_html({"input": {"name": "</title><script>alert(1)</script>"}})
    assert "<script>alert(1)" not in page


# -- the page in headless Chromium ------------------------------------------------------------------


class _Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: _Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[_Node | str] = []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, _Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[_Node]:
        return [n for n in self.iter() if (tag is None or n.tag == tag)
                and all(_has(n, k.replace("_", "-"), v) for k, v in attrs.items())]  # fmt: skip

    def by_id(self, ident: str) -> _Node:
        found = self.find_all(id=ident)
        assert found, f"no element #{ident} in the page"
        return found[0]


def _has(node: _Node, key: str, value: str) -> bool:
    key = "class" if key == "class-" else key
    have = node.attrs.get(key)
    if have is None:
        return False
    return value in have.split() if key == "class" else have == value


_VOID = {"meta", "link", "br", "hr", "img", "input", "source", "col", "area", "base", "wbr"}


class _Tree(HTMLParser):
    """The dumped DOM as a tree (enough to query by tag, id, class and attributes)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = _Node("#document", {}, None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        node = _Node(tag, dict(attrs), self.cur)
        self.cur.children.append(node)
        if tag not in _VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(_Node(tag, dict(attrs), self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "headless Chromium is needed for the report test and none is on PATH (chromium or "
        "chromium-browser): install Debian's package (apt-get install chromium); scripts/test.sh "
        "does this",
        pytrace=False,
    )


def _dump_dom(index: Path, fragment: str, profile: Path) -> _Node:
    url = index.resolve().as_uri() + fragment
    cmd = [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-dev-shm-usage", "--disable-extensions", f"--user-data-dir={profile}",
           "--allow-file-access-from-files", "--virtual-time-budget=5000", "--dump-dom", url]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "<body" in proc.stdout, proc.stderr[-2000:]
    tree = _Tree()
    tree.feed(proc.stdout)
    return tree.root


def test_the_page_renders_in_headless_chromium(tmp_path):
    make_run(tmp_path)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    index = run / "report" / "index.html"
    assert result.output.strip().splitlines()[-1] == str(index)
    page = index.read_text()
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page

    items = collect_report(run)["trajectories"]["items"]
    started = time.perf_counter()
    dom = _dump_dom(index, "", tmp_path / "profile")
    body = dom.find_all("body")[0]
    assert body.attrs.get("data-errors") == "", body.attrs.get("data-errors")
    assert body.attrs.get("data-ready") == "1"
    assert dom.by_id("errors").attrs.get("hidden") is not None
    # no injected markup: the evil text is shown as text, its tags never became elements
    assert "data-pwned" not in body.attrs
    assert not dom.find_all("img") and not dom.find_all("b")

    funnel = {s.attrs["data-step"]: s for s in dom.by_id("funnel").find_all(class_="step")}
    assert {k: s.attrs["data-count"] for k, s in funnel.items()} == {
        "generated": "6", "valid": "3", "rolled_out": "6", "kept": "6"}  # fmt: skip
    assert "oracle_failed" in funnel["valid"].text() and "llm_error" in funnel["rolled_out"].text()
    assert len(dom.by_id("hist-tokens").find_all("rect", class_="bar")) == 9
    turns_bars = dom.by_id("hist-turns").find_all("rect", class_="bar")
    assert len(turns_bars) == 11 and sum(int(b.attrs["data-count"]) for b in turns_bars) == 6
    assert dom.by_id("hist-turns").find_all("rect", class_="bar-standin")  # the stand-in part
    outcomes = {tr.attrs["data-outcome"]: tr for tr in dom.by_id("outcomes").find_all("tr")
                if "data-outcome" in tr.attrs}  # fmt: skip
    assert set(outcomes) == {"passed", "failed", "agent_timeout", "unverified", "llm_error"}
    assert "infra" in outcomes["llm_error"].attrs["class"]
    rates = dom.by_id("pass-rates").find_all("tr", data_domain="security")
    assert "33.3%" in rates[0].text()
    assert dom.by_id("pass-rates").find_all("tr", data_stand_in="1")[0].find_all(class_="standin")
    assert dom.by_id("cost-usd").attrs["data-value"] == str(0.016)
    assert "25.0%" in dom.by_id("card-teacher-pass-rate").text()
    assert "STAND-IN" in dom.by_id("standin-banner").text()
    assert len(dom.by_id("traj-list").find_all("li")) == len(items) == 7
    assert dom.by_id("traj-list").find_all("li", class_="standin")

    # the first trajectory's first turn is shown; its output keeps its whitespace
    view = dom.by_id("traj-view")
    assert view.attrs["data-traj"] == "0" and dom.by_id("turn").attrs["data-turn"] == "1"
    assert dom.by_id("turn-pos").text() == f"turn 1 of {items[0]['n_turns']}"
    first_seconds = time.perf_counter() - started

    # a URL hash picks a trajectory and a turn, and `press` replays arrow keys: sum-csv__0's
    # turn 1, right, right, left = turn 2 (reasoning, command, terminal output)
    k = next(i for i, it in enumerate(items) if it["id"] == "job1/sum-csv__0")
    dom = _dump_dom(index, f"#traj={k}&turn=1&press=RRL", tmp_path / "profile")
    assert dom.find_all("body")[0].attrs.get("data-errors") == ""
    assert dom.by_id("traj-view").attrs["data-id"] == "job1/sum-csv__0"
    assert dom.by_id("turn").attrs["data-turn"] == "2"
    assert dom.by_id("turn-pos").text() == "turn 2 of 3"
    turn = dom.by_id("turn")
    assert turn.find_all("details", class_="think")[0].text().endswith("Read the CSV.")
    assert turn.find_all("pre", class_="keys")[0].text() == "cat data.csv↵\n"
    assert "Run the next command." in turn.find_all(class_="field-plan")[0].text()
    assert dom.by_id("observation").text() == f"New Terminal Output:\n{OUT_2}"
    assert EVIL in dom.by_id("instruction").text() and not dom.find_all("img")
    assert dom.by_id("prev").attrs.get("disabled") is None

    # ... and by id, stepping with the buttons (next, prev, next); the stand-in trajectory is
    # labelled as such in the viewer
    dom = _dump_dom(index, "#traj=job1/fix-cron__oracle&turn=1&press=npn", tmp_path / "profile")
    assert dom.by_id("traj-view").attrs["data-id"] == "job1/fix-cron__oracle"
    assert "STAND-IN" in dom.by_id("traj-standin").text()
    assert dom.by_id("turn").attrs["data-turn"] == "2"
    assert dom.by_id("next").attrs.get("disabled") is not None
    print(f"chromium: first page {first_seconds:.2f}s")


def test_a_plain_rollout_job_and_a_curated_folder_report_in_chromium(tmp_path):
    """No stand-in agents, no run.json, and turns that are no complete action."""
    job = tmp_path / "job"
    odd = [
        conversation(INSTRUCTIONS["fix-cron"], ["x"])[0],
        {"role": "assistant", "content": '{"analysis": "", "plan": "", "commands": []}'},
        {"role": "user", "content": "New Terminal Output:\n\n"},
        {"role": "assistant", "content": "Questions: 1. what is in /etc/cron.d?"},
        {"role": "user", "content": "Here are the answers..."},
        {"role": "assistant", "content": "<think>cut off mid-thought"},
    ]
    write_trial(job, "fix-cron__0", task="fix-cron", task_metadata=SEED, messages=odd)
    write_trial(
        job,
        "sum-csv__0",
        task="sum-csv",
        task_metadata=SKILL,
        reward=0.0,
        outcome=Outcome.FAILED,
        messages=conversation(INSTRUCTIONS["sum-csv"], _turns(3)),
    )
    curate([job], tmp_path / "data", CurateOptions(decontaminate=False))
    for what, fragment, funnel in (
        (job, "#traj=0&turn=99", {"generated": "", "valid": "", "rolled_out": "2", "kept": ""}),
        (tmp_path / "data", "#traj=0&turn=1&press=RR",
         {"generated": "", "valid": "", "rolled_out": "", "kept": "2"}),
    ):  # fmt: skip
        index = write_report(what, tmp_path / f"rep-{what.name}")
        assert index == tmp_path / f"rep-{what.name}" / "index.html"
        dom = _dump_dom(index, fragment, tmp_path / "profile")
        body = dom.find_all("body")[0]
        assert (body.attrs.get("data-errors"), body.attrs.get("data-ready")) == ("", "1")
        assert not dom.find_all(id="standin-banner")
        steps = {s.attrs["data-step"]: s.attrs["data-count"]
                 for s in dom.by_id("funnel").find_all(class_="step")}  # fmt: skip
        assert steps == funnel
        assert dom.by_id("traj-view").attrs["data-id"] == "job1/fix-cron__0"
        # turn 99 is clamped to the last turn; right, right from turn 1 also ends there
        assert dom.by_id("turn-pos").text() == "turn 3 of 3"
        assert (
            dom.by_id("turn")
            .find_all("details", class_="think")[0]
            .text()
            .endswith("cut off mid-thought")
        )
        assert dom.by_id("next").attrs.get("disabled") is not None
    assert dom.find_all(id="hist-turns") and not dom.find_all(id="outcomes")


# -- a run like the quickstart demo's (no teacher: the oracle stands in) ----------------------------

MATH = {"source": "adapter", "adapter": "math", "dataset": "math.jsonl"}
SWE = {"source": "adapter", "adapter": "swe", "dataset": "swe.jsonl"}
# a category longer than any label the charts used to have room for
LONG_CATEGORY = "infrastructure-automation-and-observability"
BUNDLED = {
    "csv-report": {"difficulty": "easy", "category": LONG_CATEGORY},
    "hello-world": {"difficulty": "medium", "category": "file-operations"},
}
# one terminal line far wider than any screen, with no place to break it
WIDE_LINE = "root@box:/app# " + "x" * 3000
STANDIN_SOURCES = {"adapter-math": 3, "adapter-swe": 1, "tasks": 2, "synth-skills": 0}


WORDS = [f"{w}{i}" for i, w in enumerate("abcdefghijklmnopqrstuvwxyz")]


def _task_with_files(root: Path, name: str, meta: dict[str, str], solution: bool) -> Path:
    _write_task(root, name, meta)
    # distinct instructions (curation drops near-duplicates)
    k = sum(map(ord, name))
    words = [WORDS[(k * (i + 3) + i * i) % len(WORDS)] for i in range(30)]
    (root / name / "instruction.md").write_text(f"{name}: {' '.join(words)}\n")
    if solution:
        for f in ("solution/solve.sh", "tests/test.sh"):
            (root / name / f).parent.mkdir(parents=True, exist_ok=True)
            (root / name / f).write_text("#!/bin/bash\ntrue\n")
    return (root / name).resolve()


def make_standin_run(root: Path) -> Path:
    """19 tasks in the demo, 6 here: adapter tasks in the run's tasks/ (one SWE task without
    tests or solution), two bundled tasks of a `tasks:` source outside the run folder, a skipped
    synthesis source; every rollout from the oracle standing in; one record dropped by curation."""
    run = root / "run"
    tasks: dict[str, tuple[Path, dict[str, str]]] = {}
    for i in range(3):
        p = _task_with_files(run / "tasks" / "adapter-math", f"math-{i}", MATH, True)
        tasks[p.name] = (p, MATH)
    p = _task_with_files(run / "tasks" / "adapter-swe", "swe-repo-1", SWE, False)
    tasks[p.name] = (p, SWE)
    for name, meta in BUNDLED.items():
        p = _task_with_files(root / "examples" / "tasks", name, meta, True)
        tasks[name] = (p, meta)
    (run / "validation").mkdir()
    no_tests = "the task has no tests/ (by design, like the paper's adapter tasks)"
    (run / "validation" / "validation.jsonl").write_text("".join(
        json.dumps({"task": t, "path": str(p), "verdict": "no_tests" if t == "swe-repo-1" else
                    "valid", "reasons": [no_tests] if t == "swe-repo-1" else []}) + "\n"
        for t, (p, _) in tasks.items()))  # fmt: skip
    (run / "validation" / "kept.txt").write_text("".join(f"{p}\n" for p, _ in tasks.values()))
    n = 0
    for t, (p, meta) in tasks.items():
        if t == "swe-repo-1":
            continue  # no solution: the oracle cannot stand in
        for attempt in range(2):
            turns = [terminus_turn("bash /solution/solve.sh\n"), terminus_turn("", complete=True)]
            if t == "hello-world" and attempt == 1:
                turns = _turns(6)  # dropped by curation (max_turns)
            observation = f"{WIDE_LINE}\n$ " if t == "csv-report" and attempt == 0 else "$ "
            write_trial(run / "rollouts", f"{t}__{attempt}", task=t, task_path=str(p),
                        task_metadata=meta, agent="oracle", model="", attempt=attempt,
                        messages=conversation(f"Solve {t}.", turns, observation=observation))  # fmt: skip
            n += 1
    m = curate([run / "rollouts"], run / "curated",
               CurateOptions(decontaminate=False, filters=FilterOptions(max_turns=4)))  # fmt: skip
    stage = {"status": "done", "started_at": "2026-11-01T12:00:00.123456+00:00",
             "finished_at": "2026-11-01T12:05:00.654321+00:00"}  # fmt: skip
    (run / "run.json").write_text(json.dumps({
        "kind": "ttgen-run", "name": "standin-run", "created_at": "2026-11-01T12:00:00+00:00",
        "ttgen_version": "0",
        "config": {
            "sources": [{"adapter": "math", "input": "math.jsonl", "tasks": None, "synth": None},
                        {"adapter": "swe", "input": "swe.jsonl", "tasks": None, "synth": None},
                        {"adapter": None, "tasks": "tasks", "synth": None},
                        {"adapter": None, "tasks": None, "synth": "skills"}],
            "validation": {"enabled": True, "keep": ["valid", "no_solution", "no_tests"]},
            "rollouts": {"agent": "terminus-2", "attempts": 2, "stand_in": "oracle"},
        },
        "stages": {
            "sources": {**stage, "outputs": {"tasks": "tasks"},
                        "counts": {"by_source": STANDIN_SOURCES, "generated": 6, "bad": 0},
                        "note": "synth-skills skipped: synthesis needs a teacher "
                                "(--model/--base-url)"},
            "validation": {**stage, "outputs": {"validation": "validation",
                                                "kept": "validation/kept.txt"},
                           "counts": {"tasks": 6, "verdicts": {"valid": 5, "no_tests": 1},
                                      "kept": 6}},
            "rollouts": {**stage, "outputs": {"rollouts": "rollouts"},
                         "counts": {"tasks": 5, "trials": n, "outcomes": {"passed": n},
                                    "agent": "oracle", "stand_in": True, "cost_usd": None,
                                    "left_out": {"no reference solution for the oracle "
                                                 "stand-in": 1}},
                         "note": "no teacher: the oracle agent stands in"},
            "curation": {**stage, "outputs": {"curated": "curated"},
                         "counts": {**m["counts"], "dropped_by": m["dropped"]}},
            "export": {"status": "pending"},
            "report": {"status": "pending"},
        },
    }))  # fmt: skip
    return run


def test_all_tasks_are_counted_and_missing_difficulty_is_no_bucket(tmp_path):
    """The tasks section counts what the funnel counts (the bundled tasks of a `tasks:` source
    live outside the run folder), by pipeline source; adapter tasks have no difficulty: they are
    not a difficulty bucket ("-"), they are said to have none."""
    run = make_standin_run(tmp_path)
    data = collect_report(run)
    steps = {s["key"]: s for s in data["funnel"]}
    tasks = data["tasks"]
    assert tasks["count"] == steps["generated"]["count"] == 6
    assert tasks["by_origin"] == {"adapter-math": 3, "tasks": 2, "adapter-swe": 1}
    assert tasks["by_difficulty"] == {"easy": 1, "medium": 1}
    assert tasks["no_difficulty"] == {"n/a (adapter)": 4}
    kept = data["kept"]
    assert kept["records"] == 9
    assert kept["by_difficulty"] == {"easy": 2, "medium": 1}
    assert kept["no_difficulty"] == {"n/a (adapter)": 6}
    assert kept["stand_in"]["by_difficulty"] == {"easy": 2, "medium": 1}
    # a copied run folder lists its tasks where they were: still 6 tasks, not 10
    shutil.copytree(run, tmp_path / "copy")
    assert collect_report(tmp_path / "copy")["tasks"]["by_origin"] == tasks["by_origin"]


def test_tasks_used_in_place_count_before_validation_ran(tmp_path):
    """`ttgen run --until sources`: no validation lists yet; run.json's task_roots name the
    folder of the `tasks:` source, so its tasks are counted with the run's own."""
    run = make_standin_run(tmp_path)
    shutil.rmtree(run / "validation")
    manifest = json.loads((run / "run.json").read_text())
    manifest["stages"]["sources"]["counts"]["task_roots"] = {
        "tasks": str(tmp_path / "examples" / "tasks")
    }
    for stage in ("validation", "rollouts", "curation"):
        manifest["stages"][stage] = {"status": "pending"}
    (run / "run.json").write_text(json.dumps(manifest))
    tasks = collect_report(run)["tasks"]
    assert tasks["count"] == 6
    assert tasks["by_origin"] == {"adapter-math": 3, "tasks": 2, "adapter-swe": 1}


def test_a_relative_run_path_shows_each_trial_once(tmp_path, monkeypatch):
    """`ttgen report runs/x` (relative) showed every kept trial twice: as a record and again as a
    trial, the record's absolute trial_dir never matching the relative one."""
    run = make_standin_run(tmp_path)
    monkeypatch.chdir(run.parent)
    items = collect_report(Path(run.name))["trajectories"]["items"]
    assert [it["kind"] for it in items].count("record") == 9
    # the one trial curation dropped (max_turns) is the only trial shown
    assert [it["id"] for it in items if it["kind"] == "trial"] == ["job1/hello-world__1"]


def test_the_funnel_says_why_tasks_leave_each_step(tmp_path):
    run = make_standin_run(tmp_path)
    steps = {s["key"]: s for s in collect_report(run)["funnel"]}
    _funnel_says_why(steps)
    # a run.json from before rollouts.left_out: the report tells it from the task folders
    manifest = json.loads((run / "run.json").read_text())
    del manifest["stages"]["rollouts"]["counts"]["left_out"]
    (run / "run.json").write_text(json.dumps(manifest))
    _funnel_says_why({s["key"]: s for s in collect_report(run)["funnel"]})


def _funnel_says_why(steps: dict[str, dict]) -> None:

    def why(key: str) -> dict[tuple[str, str], int | None]:
        return {(w["kind"], w["what"]): w["n"] for w in steps[key]["why"]}

    gen = why("generated")
    assert gen[("source", "adapter-math")] == 3 and gen[("source", "tasks")] == 2
    assert gen[("source", "synth-skills")] == 0
    assert any("synthesis needs a teacher" in (w.get("detail") or "")
               for w in steps["generated"]["why"] if w["what"] == "synth-skills")  # fmt: skip
    assert why("valid") == {("kept", "valid"): 5, ("kept", "no_tests"): 1}
    assert "has no tests" in next(w["detail"] for w in steps["valid"]["why"]
                                  if w["what"] == "no_tests")  # fmt: skip
    ro = why("rolled_out")
    not_rolled = [w for w in steps["rolled_out"]["why"] if w["kind"] == "not_rolled_out"]
    assert [(w["what"], w["n"], w["unit"]) for w in not_rolled] == [
        ("no reference solution for the oracle stand-in", 1, "tasks")
    ]
    assert "no_tests" in not_rolled[0]["detail"] and "oracle" in not_rolled[0]["detail"]
    assert ("stand_in", "from a stand-in agent (oracle)") in ro
    kept = why("kept")
    assert kept[("drop", "max_turns")] == 1
    assert steps["kept"]["stand_in"] == 9 and steps["rolled_out"]["stand_in"] == 10


_MEASURE = r"""<script>
(function () {
  "use strict";
  function name(e) {
    var s = e.tagName.toLowerCase();
    if (e.id) s += "#" + e.id;
    var c = e.getAttribute("class");
    if (c) s += "." + c.trim().split(/\s+/).join(".");
    var sec = e.closest("section");
    return (sec ? sec.id + " " : "") + s + " \"" + (e.textContent || "").trim().slice(0, 40) + "\"";
  }
  function shown(e) { var r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; }
  // what a reader can open is measured open (the prompt, the instruction, the configuration)
  document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  var de = document.documentElement;
  var out = { page: [de.scrollWidth, de.clientWidth], wide: [], clipped: [], outside: [],
              bars: [], legends: {} };
  // cards (sections, banners) wider than themselves: something in them sticks out
  document.querySelectorAll("section, .standin-banner, .viewer, .traj-view").forEach(function (e) {
    if (shown(e) && e.scrollWidth > e.clientWidth + 1) out.wide.push(name(e) + " " + e.scrollWidth + ">" + e.clientWidth);
  });
  // text cut by overflow: hidden / clip or by text-overflow: ellipsis
  document.querySelectorAll("body *").forEach(function (e) {
    if (e instanceof SVGElement || !shown(e) || !(e.textContent || "").trim()) return;
    var cs = getComputedStyle(e);
    var hides = /hidden|clip/.test(cs.overflowX) || cs.textOverflow === "ellipsis";
    if (hides && e.scrollWidth > e.clientWidth + 1) out.clipped.push(name(e) + " " + e.scrollWidth + ">" + e.clientWidth);
  });
  // chart labels (SVG text, or text in an HTML chart) drawn outside their chart
  document.querySelectorAll("svg text, .chart *").forEach(function (e) {
    if (e.children.length && !(e instanceof SVGTextElement)) return;
    if (!(e.textContent || "").trim() || e.closest("title")) return;
    var chart = e.closest(".chart") || e.closest("svg");
    if (!chart || !shown(e)) return;
    var r = e.getBoundingClientRect(), c = chart.getBoundingClientRect();
    if (r.left < c.left - 1 || r.right > c.right + 1 || r.top < c.top - 1 || r.bottom > c.bottom + 1) {
      out.outside.push(name(e) + " in " + (chart.id || chart.getAttribute("class")));
    }
  });
  // the colour a reader sees in the middle of every data bar
  document.querySelectorAll("rect.bar, rect.hbar, .chart .bar, .chart .hbar, .step .bar, .rate span").forEach(function (b) {
    if (!shown(b)) return;
    b.scrollIntoView({ block: "center" });
    var r = b.getBoundingClientRect();
    var top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    if (!top) return;
    var cs = getComputedStyle(top);
    var colour = top instanceof SVGElement ? cs.fill : cs.backgroundColor;
    var where = b.closest("[id]");
    var row = b.closest("[data-step], tr, [data-label]");
    out.bars.push({ where: where ? where.id : "", row: row ? (row.getAttribute("data-step") || row.getAttribute("data-label") || row.getAttribute("data-domain") || "") : "",
                    standin_row: !!(row && row.getAttribute("data-stand-in") === "1"), colour: colour });
  });
  window.scrollTo(0, 0);
  var standin = getComputedStyle(de).getPropertyValue("--standin").trim();
  var probe = document.createElement("span");
  probe.style.color = standin;
  document.body.appendChild(probe);
  out.standin = getComputedStyle(probe).color;
  probe.remove();
  ["funnel", "mix-kept", "distributions", "rollouts"].forEach(function (id) {
    var box = document.getElementById(id);
    out.legends[id] = !!(box && box.querySelector(".legend .sw.standin"));
  });
  document.body.setAttribute("data-measure", JSON.stringify(out));
})();
</script>
</body>"""


def _measure(index: Path, width: int, fragment: str, tmp: Path) -> tuple[_Node, dict]:
    """The page at `width` px with a measuring script (a test-only copy of the page)."""
    copy = tmp / f"measure-{width}.html"
    copy.write_text(index.read_text().replace("</body>", _MEASURE, 1))
    url = copy.resolve().as_uri() + fragment
    cmd = [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-dev-shm-usage", "--disable-extensions", f"--user-data-dir={tmp / 'prof'}",
           "--hide-scrollbars", f"--window-size={width},1200", "--virtual-time-budget=5000",
           "--dump-dom", url]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tree = _Tree()
    tree.feed(proc.stdout)
    body = tree.root.find_all("body")[0]
    assert body.attrs.get("data-errors") == "", body.attrs.get("data-errors")
    assert body.attrs.get("data-measure"), "the measuring script did not run"
    return tree.root, json.loads(body.attrs["data-measure"])


def _shown_text(node: _Node) -> str:
    """Text a reader sees (tooltips, i.e. <title>, left out)."""
    return "".join(c if isinstance(c, str) else "" if c.tag == "title" else _shown_text(c)
                   for c in node.children)  # fmt: skip


@pytest.mark.parametrize("width", [1000, 1400])
def test_nothing_is_wider_than_the_page_or_cut_in_chromium(tmp_path, width):
    """What a reader of the demo's report saw at 1000 and 1400 px: the page scrolled sideways
    (raw JSON counts, a long terminal line in the viewer), bar labels were cut, bars of stand-in
    data were drawn in the teacher's colour."""
    run = make_standin_run(tmp_path)
    index = write_report(run)
    # the trajectory with the wide terminal line, at its first turn
    dom, m = _measure(index, width, "#traj=job1/csv-report__0&turn=1", tmp_path)
    assert dom.by_id("traj-view").attrs["data-id"] == "job1/csv-report__0"
    assert WIDE_LINE in dom.by_id("observation").text()
    assert m["page"][0] <= m["page"][1], f"the page scrolls sideways: {m['page']}"
    assert m["wide"] == [], m["wide"]
    assert m["clipped"] == [], m["clipped"]
    assert m["outside"] == [], m["outside"]
    # every label in full (no "…" cut), the stand-in part included
    for chart in ("mix-kept-domain", "mix-tasks-domain"):
        assert LONG_CATEGORY in _shown_text(dom.by_id(chart)), chart
    assert "6 (6 stand-in)" in _shown_text(dom.by_id("mix-kept-domain"))

    # the run table's counts: a small key/value table, not JSON
    counts = dom.by_id("stages").find_all("tr", data_stage="sources")[0]
    assert "{" not in _shown_text(counts)
    kv = {tr.attrs["data-key"]: _shown_text(tr.find_all("td")[-1]).strip()
          for tr in counts.find_all("tr") if "data-key" in tr.attrs}  # fmt: skip
    assert [kv[k] for k in ("generated", "bad", "adapter-math", "synth-skills")] == list("6030")

    # every bar that shows stand-in data (all rollouts here) is in the stand-in colour, and a
    # legend says what the colour means; task bars (no agent involved) are not
    standin = m["standin"]
    bars = m["bars"]
    kept_bars = [b for b in bars if b["where"].startswith(("mix-kept", "hist-"))]
    assert kept_bars and all(b["colour"] == standin for b in kept_bars), kept_bars
    funnel = {b["row"]: b["colour"] for b in bars if b["where"] == "funnel"}
    assert funnel["rolled_out"] == funnel["kept"] == standin, funnel
    assert funnel["generated"] != standin
    rates = [b for b in bars if b["standin_row"]]
    assert rates and all(b["colour"] == standin for b in rates), rates
    assert all(b["colour"] != standin for b in bars if b["where"].startswith("mix-tasks"))
    assert m["legends"] == {"funnel": True, "mix-kept": True, "distributions": True,
                            "rollouts": True}  # fmt: skip

    # the headings count what the funnel counts; difficulty is no "-" bucket
    assert _shown_text(dom.by_id("mix-tasks").find_all("h3")[0]).startswith("all tasks (6)")
    for chart in ("mix-kept-difficulty", "mix-tasks-difficulty"):
        labels = [n.attrs["data-label"] for n in dom.by_id(chart).iter() if "data-label" in n.attrs]
        assert labels and "-" not in labels and not any("n/a" in x for x in labels), labels
    assert "n/a (adapter)" in _shown_text(dom.by_id("mix-tasks"))
    # the funnel says why: verdicts, tasks not rolled out, curation drops
    funnel_text = _shown_text(dom.by_id("funnel"))
    for words in ("no_tests", "no reference solution", "max_turns", "synth-skills",
                  "needs a teacher", "adapter-math"):  # fmt: skip
        assert words in funnel_text, words


def test_training_loss_curve_and_eval_table_in_chromium(tmp_path):
    """A run with train and eval stages: the page draws the loss curve from metrics.jsonl and
    the eval table from eval.json (what `ttgen run` with train/eval stages writes)."""
    make_run(tmp_path)
    run = tmp_path / "run"
    train = run / "train"
    train.mkdir()
    (train / "train.json").write_text(json.dumps(
        {"kind": "ttgen-train", "backend": "trl", "status": "done",
         "config": {"preset": "cpu-tiny", "model": "init:qwen3-tiny"}}))  # fmt: skip
    lines = [json.dumps({"step": i, "loss": 6.0 * 0.97**i, "learning_rate": 1e-3,
                         "tokens_per_s": 1000.0 + i}) for i in range(1, 81)]  # fmt: skip
    (train / "metrics.jsonl").write_text("\n".join([*lines, "{not json"]) + "\n")
    (run / "eval").mkdir()
    (run / "eval" / "eval.json").write_text(json.dumps({
        "agent": "terminus-2", "model": "tiny", "checkpoint": str(train / "model"), "k": 1,
        "n_tasks": 2, "n_trials": 2, "n_passed": 0, "accuracy": 0.0, "accuracy_se": 0.0,
        "n_missing": 0, "outcomes": {"failed": 1, "parse_error": 1},
        "categories": {"file-operations": {"n_tasks": 1, "n_trials": 1, "n_passed": 0,
                                           "accuracy": 0.0},
                       "data-science": {"n_tasks": 1, "n_trials": 1, "n_passed": 0,
                                        "accuracy": 0.0}}}))  # fmt: skip
    data = collect_report(run)
    t = data["training"]
    assert t["steps"] == 80 and t["first_loss"] > 4 * t["last_loss"] / 2
    assert t["problems"] == [f"{train / 'metrics.jsonl'}: line 81 is not a metrics record"]
    assert data["eval"]["accuracy"] == 0.0
    index = write_report(run)
    dom = _dump_dom(index, "", tmp_path / "profile")
    body = dom.find_all("body")[0]
    assert body.attrs.get("data-errors") == "" and body.attrs.get("data-ready") == "1"
    curve = dom.by_id("loss-curve").find_all("path", class_="curve")
    assert curve and curve[0].attrs["data-points"] == "80"
    assert "80" in dom.by_id("training").text() and "cpu-tiny" in dom.by_id("training").text()
    rows = dom.by_id("eval-table").find_all("tr", data_category="file-operations")
    assert rows and "0.0%" in rows[0].text()
    assert "parse_error" in dom.by_id("eval").text() or "parse" in dom.by_id("eval").text()
    assert "line 81" in dom.by_id("problems").text()
