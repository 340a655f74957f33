"""The checker scripts adapter tasks carry, run as the container runs them: `python3 script ...`.

Here python3 is the host's; test.sh is run with its container paths (/app, /tests, /logs)
rewritten to temporary folders.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ttgen.sources.adapters import verifier_source

PYTHON3 = shutil.which("python3") or "python3"


@pytest.fixture
def scripts(tmp_path) -> Path:
    d = tmp_path / "tests"
    d.mkdir()
    for name in ("verify_math.py", "verify_code.py"):
        (d / name).write_text(verifier_source(name))
    return d


def run_math(scripts: Path, expected: str, solution: str | None) -> subprocess.CompletedProcess:
    (scripts / "expected.txt").write_text(expected + "\n")
    sol = scripts.parent / "solution.txt"
    if solution is not None:
        sol.write_text(solution)
    return subprocess.run(
        [PYTHON3, str(scripts / "verify_math.py"), str(scripts / "expected.txt"), str(sol)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


# -- math -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "solution"),
    [
        ("401", "401"),
        ("401", "401\n"),
        ("\\frac{5}{12}", "5/12"),
        ("\\frac{5}{12}", "$\\dfrac{5}{12}$"),
        ("\\frac{3}{4}", "0.75"),
        ("3/10", "\\tfrac{3}{10}"),
        ("3\\sqrt{5}", "\\sqrt{45}"),
        ("3\\sqrt{5}", "3*sqrt(5)"),
        ("3\\sqrt{5}", "6.7082039"),
        ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}"),
        ("(2, 1)", "\\left( 2, 1 \\right)"),
        ("(2, 1)", "(2.0, 1)"),
        ("\\{1, 2, 3\\}", "\\{3, 1, 2\\}"),
        ("1, 2", "2, 1"),
        ("[0, \\infty)", "[0,\\infty)"),
        ("80^\\circ", "80"),
        ("80^{\\circ}", "80°"),
        ("50\\%", "50"),
        ("10\\text{ cm}", "10"),
        ("1000000", "1,000,000"),
        ("1000000", "1{,}000{,}000"),
        ("2", "x = 2"),
        ("\\frac{3}{5}", "We get $r=\\boxed{\\frac{3}{5}}$."),
        ("7", "Adding both equations gives 2x = 14.\nSo the answer is 7."),
        ("12", "First 5 + 7\n= 12"),
        ("\\text{(B)}", "B"),
        ("Yes", "yes."),
        ("-\\frac12", "-0.5"),
        ("2^{10}", "1024"),
        ("\\pi/2", "1.5707963"),
        ("123456789012345678901234567890", "123456789012345678901234567890"),
    ],
)
def test_math_answers_that_match(scripts, expected, solution):
    run = run_math(scripts, expected, solution)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PASS" in run.stdout and "MATCH" in run.stdout


@pytest.mark.parametrize(
    ("expected", "solution"),
    [
        ("401", "402"),
        ("\\frac{5}{12}", "5/13"),
        ("\\frac{5}{12}", "0.41"),  # 0.41666... only to two places
        ("(2, 1)", "(1, 2)"),  # an ordered pair is ordered
        ("[0, 1)", "[0, 1]"),  # so are interval ends
        ("50\\%", "0.5"),  # percentages are not turned into decimals
        ("123456789012345678901234567890", "123456789012345678901234567891"),  # exact integers
        ("12", "1\n2"),  # two lines are not the number 12
        ("3\\sqrt{5}", "3\\sqrt{6}"),
        ("Yes", "No"),
        ("7", ""),
        ("1", "1e99999999"),  # answered at once, not after building a 100M-digit number
    ],
)
def test_math_answers_that_do_not_match(scripts, expected, solution):
    run = run_math(scripts, expected, solution)
    assert run.returncode == 3, run.stdout + run.stderr
    assert "FAIL" in run.stdout


def test_math_missing_solution_file_fails_with_a_reason(scripts):
    run = run_math(scripts, "5", None)
    assert run.returncode == 3
    assert "does not exist" in run.stdout


def test_math_report_says_what_was_compared(scripts):
    run = run_math(scripts, "\\frac{3}{4}", "Work.\nThe answer is 0.75")
    assert run.returncode == 0
    assert "reference answer: \\frac{3}{4}  (normalized: 3/4)" in run.stdout
    assert 'after "answer is"' in run.stdout or "whole file" in run.stdout


# -- code -----------------------------------------------------------------------------------------

ADD = "a, b = map(float, input().split())\ns = a + b\nprint(int(s) if s == int(s) else s)\n"
STDIO = {
    "mode": "stdio",
    "case_timeout_sec": 2,
    "cases": [
        {"input": "1 2\n", "output": "3\n"},
        {"input": "0.1 0.2\n", "output": "0.3"},  # 0.30000000000000004 within 1e-6
        {"input": "-5 5\n", "output": "0\n"},
    ],
}


def run_code(scripts: Path, spec: dict, code: str | None, *extra: str):
    (scripts / "cases.json").write_text(json.dumps(spec))
    sol = scripts.parent / "app" / "solution.py"
    sol.parent.mkdir(exist_ok=True)
    if code is not None:
        sol.write_text(code)
    return subprocess.run(
        [PYTHON3, str(scripts / "verify_code.py"), str(scripts / "cases.json"), str(sol), *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_code_good_solution_passes_every_case(scripts):
    run = run_code(scripts, STDIO, ADD)
    assert run.returncode == 0, run.stdout + run.stderr
    assert [line.split(":")[1].split()[0] for line in run.stdout.splitlines()[1:4]] == ["pass"] * 3
    assert "PASS: 3/3 test cases passed" in run.stdout


def test_code_wrong_answer_fails_and_stops_at_the_first_failure(scripts):
    wrong = "a, b = map(int, input().split())\nprint(a - b)\n"
    run = run_code(scripts, STDIO, wrong)
    assert run.returncode == 3
    assert "case 1/3: FAIL" in run.stdout
    assert "token 1: expected '3', got '-1'" in run.stdout
    assert "2 remaining case(s) not run" in run.stdout
    run_all = run_code(scripts, STDIO, wrong, "--all")
    assert run_all.stdout.count("FAIL (") + run_all.stdout.count("ERROR (") == 3


def test_code_integers_are_exact_and_floats_tolerant(scripts):
    spec = {"mode": "stdio", "cases": [{"input": "", "output": "100000000000000000001 2.5"}]}
    assert run_code(scripts, spec, "print('100000000000000000001 2.5000001')").returncode == 0
    assert run_code(scripts, spec, "print('100000000000000000000 2.5')").returncode == 3
    assert run_code(scripts, spec, "print('100000000000000000001 2.6')").returncode == 3
    assert run_code(scripts, spec, "print('100000000000000000001')").returncode == 3


def test_code_missing_solution_crash_and_timeout(scripts):
    run = run_code(scripts, STDIO, None)
    assert run.returncode == 3 and "does not exist" in run.stdout

    run = run_code(scripts, STDIO, "raise RuntimeError('kaboom')\n")
    assert run.returncode == 3
    assert "case 1/3: ERROR" in run.stdout and "RuntimeError: kaboom" in run.stdout

    # A solution that hangs, with a child process that would hang too: both are killed.
    hang = "import subprocess, time\nsubprocess.Popen(['sleep', '60'])\ntime.sleep(60)\n"
    t0 = time.monotonic()
    run = run_code(scripts, {**STDIO, "case_timeout_sec": 30}, hang, "--case-timeout", "1")
    assert run.returncode == 3
    assert "case 1/3: TIMEOUT" in run.stdout and "after 1 s" in run.stdout
    assert time.monotonic() - t0 < 15


def test_code_call_based_solution_class_and_function(scripts):
    spec = {
        "mode": "call",
        "fn_name": "twoSum",
        "cases": [
            {"input": [[2, 7, 11, 15], 9], "output": [[0, 1]]},  # APPS wraps the return value
            {"input": [[3, 2, 4], 6], "output": [1, 2]},
        ],
    }
    cls = (
        "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
        "        seen = {}\n        for i, x in enumerate(nums):\n"
        "            if target - x in seen:\n                return (seen[target - x], i)\n"
        "            seen[x] = i\n"
    )  # List without an import, as LeetCode code has it; a tuple is returned
    run = run_code(scripts, spec, cls)
    assert run.returncode == 0, run.stdout + run.stderr
    func = (
        "def twoSum(nums, target):\n"
        "    return next([i, j] for j in range(len(nums)) for i in range(j)"
        " if nums[i] + nums[j] == target)\n"
    )  # a top-level function works too
    assert run_code(scripts, spec, func).returncode == 0
    run = run_code(scripts, spec, "def twoSum(nums, target):\n    return [1, 0]\n")
    assert run.returncode == 3 and "case 1/2: FAIL" in run.stdout
    assert "expected [[0, 1]], got [1, 0]" in run.stdout
    run = run_code(scripts, spec, "def other():\n    pass\n")
    assert run.returncode == 3 and "no function or Solution method 'twoSum'" in run.stdout


# -- test.sh ------------------------------------------------------------------------------------


def _host_test_sh(task: Path, root: Path) -> Path:
    """The task's test.sh with /app, /tests and /logs pointing into `root`."""
    text = (task / "tests" / "test.sh").read_text()
    for src, dst in (("/app/", f"{root}/app/"), ("/tests/", f"{root}/tests/"),
                     ("/logs/", f"{root}/logs/")):  # fmt: skip
        text = text.replace(src, dst)
    shutil.copytree(task / "tests", root / "tests")
    (root / "app").mkdir()
    script = root / "test.sh"
    script.write_text(text)
    return script


@pytest.fixture
def math_task(tmp_path) -> Path:
    from ttgen.sources.adapters import adapt

    src = tmp_path / "m.jsonl"
    src.write_text(json.dumps({"id": "p", "problem": "2+2?", "answer": "4"}) + "\n")
    adapt("math", src, tmp_path / "tasks")
    return tmp_path / "tasks" / "math-p"


@pytest.mark.parametrize(
    ("solution", "checker", "reward", "says"),
    [
        ("4\n", None, "1", "reward: 1"),
        ("5\n", None, "0", "FAIL: no candidate matches"),
        (None, None, "0", "solution.txt does not exist"),
        ("4\n", "raise SystemExit(5)\n", "0", "the checker could not run (exit 5"),
        ("4\n", "this is not python(\n", "0", "the checker could not run"),
    ],
)
def test_test_sh_always_writes_a_reward(math_task, tmp_path, solution, checker, reward, says):
    root = tmp_path / "root"
    root.mkdir()
    script = _host_test_sh(math_task, root)
    if solution is not None:
        (root / "app" / "solution.txt").write_text(solution)
    if checker is not None:
        (root / "tests" / "verify_math.py").write_text(checker)
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0
    assert (root / "logs" / "verifier" / "reward.txt").read_text().strip() == reward
    assert says in run.stdout
