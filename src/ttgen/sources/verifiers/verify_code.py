#!/usr/bin/env python3
"""Run a Python solution against test cases (written by `ttgen adapt code`).

usage: verify_code.py CASES_JSON SOLUTION_PY [--all] [--case-timeout SECONDS]

CASES_JSON holds ``{"mode": "stdio" | "call", "fn_name": ..., "case_timeout_sec": 10,
"cases": [{"input": ..., "output": ...}, ...]}``.

* stdio: ``python3 SOLUTION_PY`` runs once per case with the input on stdin, in the solution's
  folder; its stdout must equal the expected output token by token (whitespace is not
  significant; two numbers at least one of which has a decimal point or exponent are equal
  within 1e-6, absolute or relative; integers must be identical).
* call: the solution is imported as a module (typing's names such as ``List`` are predefined, as
  LeetCode-style code assumes them) and ``Solution().fn_name(*args)`` or the top-level
  ``fn_name(*args)`` is called with the case's input (a list of arguments). The return value
  must equal the expected output (tuples count as lists, floats within 1e-6); an expected
  ``[value]`` also accepts ``value``, as APPS wraps return values in a list.

Every case runs in its own process group with a time limit (default 10 s) and is killed, with
everything it started, when the limit passes. One line per case says pass / FAIL / TIMEOUT /
ERROR with a short excerpt. By default the run stops at the first case that does not pass (the
reward is 0 already); --all runs every case. Exit status 0 when every case passed, 3 otherwise,
2 on a usage error; any other status (1: an uncaught exception) is a checker crash.

Standard library only, and no syntax newer than Python 3.8: this runs inside the task's
container with whatever python3 its image has.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback

DEFAULT_CASE_TIMEOUT_SEC = 10.0
FAILED = 3  # exit status when a case fails; 1 stays Python's own for a crash
MAX_OUTPUT_BYTES = 64 << 20
TOLERANCE = 1e-6
EXCERPT = 200

_NUMBER_RE = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
_INT_RE = re.compile(r"^[-+]?\d+$")


# -- comparison -----------------------------------------------------------------------------------


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOLERANCE or abs(a - b) <= TOLERANCE * max(abs(a), abs(b))


def compare_stdout(expected: str, got: str) -> tuple[bool, str]:
    """Token-wise comparison of program output: (equal, why not)."""
    exp, out = expected.split(), got.split()
    for k in range(min(len(exp), len(out))):
        a, b = exp[k], out[k]
        if a == b:
            continue
        if (
            _NUMBER_RE.match(a)
            and _NUMBER_RE.match(b)
            and not (_INT_RE.match(a) and _INT_RE.match(b))
            and _close(float(a), float(b))
        ):
            continue
        return False, f"token {k + 1}: expected {_clip(a)!r}, got {_clip(b)!r}"
    if len(exp) != len(out):
        return False, f"expected {len(exp)} tokens, got {len(out)}"
    return True, ""


def values_equal(expected: object, got: object) -> bool:
    """Deep equality of JSON values; floats within tolerance; bools are not numbers."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return isinstance(expected, bool) and isinstance(got, bool) and expected == got
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        if isinstance(expected, int) and isinstance(got, int):
            return expected == got
        fe, fg = float(expected), float(got)
        if math.isnan(fe) or math.isnan(fg):
            return math.isnan(fe) and math.isnan(fg)
        return fe == fg or _close(fe, fg)
    if isinstance(expected, list) and isinstance(got, list):
        return len(expected) == len(got) and all(
            values_equal(expected[k], got[k]) for k in range(len(got))
        )
    if isinstance(expected, dict) and isinstance(got, dict):
        return expected.keys() == got.keys() and all(
            values_equal(expected[k], got[k]) for k in expected
        )
    return expected == got


def return_value_matches(expected: object, got: object) -> bool:
    if values_equal(expected, got):
        return True
    return isinstance(expected, list) and len(expected) == 1 and values_equal(expected[0], got)


def _clip(text: str, n: int = EXCERPT) -> str:
    text = text if isinstance(text, str) else json.dumps(text)
    return text if len(text) <= n else text[: n - 3] + "..."


# -- running one case -------------------------------------------------------------------------


class _Run:
    def __init__(self) -> None:
        self.exit_code: int | None = None
        self.timed_out = False
        self.stdout = ""
        self.stderr = ""
        self.seconds = 0.0


def _read_capped(f) -> str:
    f.seek(0)
    data = f.read(MAX_OUTPUT_BYTES)
    return data.decode("utf-8", errors="replace")


def run_process(argv: list[str], stdin_text: str | None, cwd: str, timeout: float) -> _Run:
    """Run argv in its own process group; kill the whole group when the time limit passes."""
    run = _Run()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        stdin = subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL
        t0 = time.monotonic()
        proc = subprocess.Popen(
            argv, stdin=stdin, stdout=out, stderr=err, cwd=cwd, start_new_session=True
        )
        try:
            if stdin_text is not None:
                try:
                    proc.communicate(stdin_text.encode("utf-8"), timeout=timeout)
                except BrokenPipeError:
                    proc.wait(timeout=max(0.01, timeout - (time.monotonic() - t0)))
            else:
                proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            run.timed_out = True
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # the whole group: what the case started
            proc.wait()
        run.seconds = time.monotonic() - t0
        run.exit_code = proc.returncode
        run.stdout = _read_capped(out)
        run.stderr = _read_capped(err)
    return run


def _error_excerpt(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return _clip(" | ".join(lines[-3:])) if lines else "(no stderr)"


def _as_text(value: object) -> str:
    if isinstance(value, list):
        return "\n".join(str(v) for v in value) + "\n"
    return value if isinstance(value, str) else json.dumps(value)


def run_case(spec: dict, case: dict, solution: str, timeout: float) -> tuple[str, str, float]:
    """(status, detail, seconds) for one case; status is pass, FAIL, TIMEOUT or ERROR."""
    cwd = os.path.dirname(os.path.abspath(solution)) or "."
    if spec.get("mode") == "call":
        with tempfile.TemporaryDirectory() as tmp:
            args_path, result_path = os.path.join(tmp, "args.json"), os.path.join(tmp, "out.json")
            with open(args_path, "w", encoding="utf-8") as f:
                json.dump(case["input"], f)
            argv = [sys.executable, os.path.abspath(__file__), "--call", solution,
                    str(spec["fn_name"]), args_path, result_path]  # fmt: skip
            run = run_process(argv, None, cwd, timeout)
            if run.timed_out:
                return "TIMEOUT", f"no result after {timeout:g} s", run.seconds
            try:
                with open(result_path, encoding="utf-8") as f:
                    result = json.load(f)
            except (OSError, ValueError):
                return "ERROR", f"exit {run.exit_code}: {_error_excerpt(run.stderr)}", run.seconds
        if "error" in result:
            return "ERROR", _clip(result["error"]), run.seconds
        got = result.get("result")
        if return_value_matches(case["output"], got):
            return "pass", "", run.seconds
        detail = f"expected {_clip(json.dumps(case['output']))}, got {_clip(json.dumps(got))}"
        return "FAIL", detail, run.seconds
    run = run_process([sys.executable, solution], _as_text(case["input"]), cwd, timeout)
    if run.timed_out:
        return "TIMEOUT", f"still running after {timeout:g} s", run.seconds
    if run.exit_code != 0:
        return "ERROR", f"exit {run.exit_code}: {_error_excerpt(run.stderr)}", run.seconds
    ok, why = compare_stdout(_as_text(case["output"]), run.stdout)
    if ok:
        return "pass", "", run.seconds
    return "FAIL", f"{why}; stdout: {_clip(run.stdout.strip())!r}", run.seconds


# -- call-based child process -----------------------------------------------------------------


def _jsonable(value: object) -> object:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [_jsonable(v) for v in value]
        try:
            return sorted(items)  # type: ignore[type-var]
        except TypeError:
            return items
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def _call_child(solution: str, fn_name: str, args_path: str, result_path: str) -> int:
    import importlib.util
    import typing

    def finish(obj: dict) -> int:
        with open(result_path, "w", encoding="utf-8") as f:
            json.dump(obj, f)
        return 0 if "result" in obj else 1

    with open(args_path, encoding="utf-8") as f:
        args = json.load(f)
    sys.path.insert(0, os.path.dirname(os.path.abspath(solution)))
    try:
        spec = importlib.util.spec_from_file_location("solution", solution)
        if spec is None or spec.loader is None:
            return finish({"error": f"cannot import {solution}"})
        module = importlib.util.module_from_spec(spec)
        for name in getattr(typing, "__all__", []):
            if hasattr(typing, name):
                setattr(module, name, getattr(typing, name))
        sys.modules["solution"] = module
        spec.loader.exec_module(module)
        holder = getattr(module, "Solution", None)
        if holder is not None and hasattr(holder, fn_name):
            target = getattr(holder(), fn_name)
        elif callable(getattr(module, fn_name, None)):
            target = getattr(module, fn_name)
        else:
            return finish(
                {"error": f"{solution} defines no function or Solution method {fn_name!r}"}
            )
        result = target(*args) if isinstance(args, list) else target(args)
    except BaseException as exc:  # the solution's own failure, reported as this case's error
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        return finish({"error": "".join(tb[-2:]).strip().replace("\n", " | ")})
    return finish({"result": _jsonable(result)})


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    if len(argv) == 6 and argv[1] == "--call":
        return _call_child(*argv[2:])
    args = argv[1:]
    run_all = "--all" in args
    args = [a for a in args if a != "--all"]
    timeout_override = None
    if "--case-timeout" in args:
        k = args.index("--case-timeout")
        try:
            timeout_override = float(args[k + 1])
        except (IndexError, ValueError):
            print("--case-timeout needs a number of seconds", file=sys.stderr)
            return 2
        del args[k : k + 2]
    if len(args) != 2:
        print(
            "usage: verify_code.py CASES_JSON SOLUTION_PY [--all] [--case-timeout S]",
            file=sys.stderr,
        )
        return 2
    cases_path, solution = args
    try:
        with open(cases_path, encoding="utf-8") as f:
            spec = json.load(f)
        cases = spec["cases"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"cannot read the test cases {cases_path}: {exc}")
        return 2
    if not os.path.isfile(solution):
        print(f"FAIL: {solution} does not exist")
        return FAILED
    timeout = timeout_override or float(spec.get("case_timeout_sec") or DEFAULT_CASE_TIMEOUT_SEC)
    mode = spec.get("mode", "stdio")
    what = f"call {spec.get('fn_name')}()" if mode == "call" else "stdin -> stdout"
    print(f"{len(cases)} test case(s), {what}, {timeout:g} s each: {solution}")
    passed = 0
    for k, case in enumerate(cases, 1):
        status, detail, seconds = run_case(spec, case, solution, timeout)
        line = f"case {k}/{len(cases)}: {status} ({seconds:.2f} s)"
        print(f"{line}: {detail}" if detail else line, flush=True)
        if status == "pass":
            passed += 1
        elif not run_all:
            rest = len(cases) - k
            if rest:
                print(f"{rest} remaining case(s) not run: the reward is 0 already")
            break
    ok = passed == len(cases)
    print(f"{'PASS' if ok else 'FAIL'}: {passed}/{len(cases)} test cases passed")
    return 0 if ok else FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv))
