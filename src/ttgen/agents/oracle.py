"""`oracle`: runs the task's reference solution. A valid task's verifier gives it 1.

As in Harbor: solution/ is uploaded to /solution (only for this agent), then solve.sh runs with
`[solution] env`, from the container's working directory, as the task's agent user; its output
goes to agent/oracle.txt. The agent returns when solve.sh exits: services it started in the
background (`nohup python3 -m http.server 8000 &`) keep running for the verifier.

With ``transcript=True`` (the offline quickstart's stand-in for a teacher) it also writes
agent/messages.json in Terminus 2's shape: the Terminus 2 prompt with the instruction, one action
typing the reference solution as a heredoc, the terminal output, and the two completion turns.
The trial's agent stays ``oracle``, so curation marks the records ``stand_in`` and the export's
``agent`` column says ``oracle``: such data shows the pipeline working, it is not teacher data.
"""

from __future__ import annotations

import json
from typing import ClassVar

from ttgen import __version__
from ttgen.agents.base import AgentContext, ModelInfo, exec_until_exit
from ttgen.agents.terminus2.observation import limit_output_length
from ttgen.agents.terminus2.prompts import completion_message, render_prompt
from ttgen.errors import AgentError
from ttgen.formats.trial import write_json_atomic
from ttgen.sandbox.base import Sandbox, resolve_env

SOLUTION_DIR = "/solution"


class OracleAgent:
    name: ClassVar[str] = "oracle"

    def __init__(self, transcript: bool = False, **kwargs: object) -> None:
        if kwargs:
            raise TypeError(f"the oracle agent takes only `transcript` (got {', '.join(kwargs)})")
        self.transcript = bool(transcript)

    def version(self) -> str:
        return __version__

    def model_info(self) -> ModelInfo | None:
        return None

    async def setup(self, sandbox: Sandbox, ctx: AgentContext) -> None:
        if ctx.task.solve_script is None:
            raise AgentError(f"{ctx.task.name}: no solution/solve.sh, so the oracle cannot run")
        assert ctx.task.path is not None
        await sandbox.upload_dir(ctx.task.path / "solution", SOLUTION_DIR)

    async def run(self, instruction: str, sandbox: Sandbox, ctx: AgentContext) -> None:
        env = resolve_env(ctx.task.config.solution.env)
        result = await exec_until_exit(
            sandbox,
            f"chmod +x {SOLUTION_DIR}/solve.sh; bash {SOLUTION_DIR}/solve.sh",
            env=env,
            user=ctx.user,
            timeout=ctx.time_left(),
        )
        text = result.stdout
        if result.stdout_omitted_bytes:
            ctx.metadata["output_omitted_bytes"] = result.stdout_omitted_bytes
        (ctx.logs_dir / "oracle.txt").write_text(text, encoding="utf-8")
        ctx.metadata["exit_code"] = result.exit_code
        ctx.metadata["duration_sec"] = round(result.duration_sec, 3)
        if self.transcript:
            where = await sandbox.exec(
                'printf \'%s@%s:%s# \' "$(id -un)" "$(hostname)" "$PWD"', user=ctx.user, timeout=10
            )
            prompt = where.stdout.strip() + " " if where.exit_code == 0 else "$ "
            script = ctx.task.solve_script
            solve = script.read_text(encoding="utf-8").rstrip("\n") if script else ""
            messages = stand_in_transcript(instruction, prompt, solve, text, result.exit_code)
            write_json_atomic(
                ctx.logs_dir / "messages.json",
                json.dumps(messages, indent=2, ensure_ascii=False),
                fsync=False,
            )
            ctx.metadata["task_complete"] = True
            ctx.metadata["ended"] = "task_complete"
            ctx.metadata["stand_in"] = True


def stand_in_transcript(
    instruction: str, prompt: str, solve: str, output: str, exit_code: int
) -> list[dict[str, str]]:
    """A Terminus 2-shaped conversation of the oracle running the reference solution."""
    keys = f"bash <<'TTGEN_SOLUTION'\n{solve}\nTTGEN_SOLUTION\n"
    action = {
        "analysis": "Stand-in for a teacher model: the task's reference solution (oracle agent).",
        "plan": "Run the reference solution in the terminal.",
        "commands": [{"keystrokes": keys, "duration": 1.0}],
        "task_complete": False,
    }
    done = {
        "analysis": f"The reference solution finished with exit code {exit_code}.",
        "plan": "Mark the task complete.",
        "commands": [],
        "task_complete": True,
    }
    screen = f"{prompt}{keys}{output}{'' if output.endswith(chr(10)) or not output else chr(10)}"
    return [
        {"role": "user", "content": render_prompt(instruction, prompt)},
        {"role": "assistant", "content": json.dumps(action, indent=2)},
        {
            "role": "user",
            "content": f"New Terminal Output:\n\n{limit_output_length(screen + prompt)}",
        },
        {"role": "assistant", "content": json.dumps(done, indent=2)},
        {"role": "user", "content": completion_message(prompt)},
        {"role": "assistant", "content": json.dumps(done, indent=2)},
    ]
