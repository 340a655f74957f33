"""The Terminus 2 agent loop: the teacher model drives a tmux session through JSON actions.

Turn by turn, as in Harbor's Terminus 2:
  1. the first user message is the whole prompt template with the instruction and the initial
     screen (no system message);
  2. the model answers; a parse error executes nothing and the next user message is the
     "Previous response had parsing errors" feedback; warnings are prefixed to the next
     observation;
  3. each command's keystrokes go to tmux, then the loop waits min(duration, 60) s (ending early
     when the shell is back at its prompt, unless strict timing);
  4. the observation is the incremental terminal output, cut to 10,000 bytes middle-out;
  5. `task_complete` needs two consecutive confirmations.

Outputs in the trial's agent/ folder, rewritten after every turn (a timeout loses nothing):
messages.json (the exact conversation: the SFT rows; assistant turns carry the reasoning as
<think>), trajectory.json (ATIF, Terminus 2 mapping); from the container, the raw pane log
terminus_2.pane and recording.cast (asciinema v2: the pane's output as it came, plus after the
run the keystrokes sent as input events and a marker per turn). Both JSON files, and each
request's messages, are derived from one history (history.py) kept as the run goes.
A response cut at the output limit (finish_reason "length") executes nothing: the model is told
so in Harbor's words and asked again (XML: a complete response before the cut is used instead).
Context summarization (summarize.py) keeps long trajectories going: each earlier context is
kept as messages.ctx-N.json and the three handoff calls as summarization-N-*.json.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from ttgen.agents.base import AgentContext, ModelInfo
from ttgen.agents.terminus2.history import SUMMARIZATION_MESSAGE, Entry, History
from ttgen.agents.terminus2.observation import limit_output_length
from ttgen.agents.terminus2.parser import (
    parse_json_response,
    parse_xml_response,
    salvage_xml_response,
)
from ttgen.agents.terminus2.prompts import (
    DEFAULT_TEMPLATE,
    TEMPLATES,
    WARNINGS_PREFIX,
    completion_message,
    output_length_message,
    parse_error_message,
    render_prompt,
)
from ttgen.agents.terminus2.summarize import (
    ANSWERS_PROMPT,
    DEFAULT_CONTEXT_WINDOW,
    HANDOFF_PROMPT,
    LAST_RESORT_HANDOFF,
    PROACTIVE_THRESHOLD,
    QUESTIONS_PROMPT,
    SHORT_SUMMARY_HANDOFF,
    SHORT_SUMMARY_PROMPT,
    SUMMARY_PROMPT,
    TECHNICAL_DIFFICULTIES,
    estimate_tokens,
    unwind,
)
from ttgen.agents.terminus2.tmux import TmuxSession
from ttgen.errors import AgentError, ConfigError, LLMError
from ttgen.formats.trial import write_json_atomic
from ttgen.llm import (
    ContextLengthExceededError,
    LLMClient,
    LLMConfig,
    LLMResponse,
    TokenUsage,
    check_endpoint,
)
from ttgen.sandbox.base import Sandbox

VERSION = "2.0.0"
MAX_COMMAND_WAIT_SEC = 60.0
# Consecutive responses cut at the output limit answered with the "NONE of the actions" message
# before a cut response is taken as it is (Harbor asks again without limit, until the timeout).
MAX_OUTPUT_LENGTH_RETRIES = 10
PANE_LOG = "/logs/agent/terminus_2.pane"
RECORDING = "/logs/agent/recording.cast"
# messages.json and trajectory.json are rewritten after a turn at most this often while the
# agent runs (each write re-encodes the whole history), and always when it stops.
FLUSH_EVERY_SEC = 5.0

log = logging.getLogger(__name__)
_writer: concurrent.futures.ThreadPoolExecutor | None = None
_writer_lock = threading.Lock()


def _file_writer() -> concurrent.futures.ThreadPoolExecutor:
    """One thread, for the whole process, that writes the files of running trials in the order
    they were asked for: the temporary file and the rename (on ext4 a rename over a file starts
    its writeback, ~1 ms under load) stay off the event loop that all trials share."""
    global _writer
    with _writer_lock:
        if _writer is None:
            _writer = concurrent.futures.ThreadPoolExecutor(1, "ttgen-trial-files")
        return _writer


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Terminus2Agent:
    name: ClassVar[str] = "terminus-2"

    def __init__(
        self,
        *,
        model: str,
        base_url: str,
        api_key: str | None = None,
        temperature: float | None = 0.7,
        top_p: float | None = None,
        max_tokens: int | None = None,
        extra_body: dict[str, Any] | None = None,
        template: str = DEFAULT_TEMPLATE,
        max_turns: int = 1_000_000,
        strict_timing: bool = False,
        pane_width: int = 160,
        pane_height: int = 40,
        max_concurrency: int | None = None,
        timeout_sec: float = 600.0,
        max_retries: int = 6,
        price_input_per_mtok: float | None = None,
        price_output_per_mtok: float | None = None,
        model_provider: str | None = None,
        enable_summarize: bool = True,
        proactive_summarization_threshold: int = PROACTIVE_THRESHOLD,
        context_window: int | None = None,
        record_terminal_session: bool = True,
        collect_rollout_details: bool = False,
        tmux_control: bool = True,
    ) -> None:
        if template not in TEMPLATES:
            raise ConfigError(
                f"terminus-2: unknown template {template!r}; use one of {sorted(TEMPLATES)}"
            )
        config: dict[str, Any] = {
            "model": model,
            "base_url": base_url,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "extra_body": extra_body or {},
            "max_concurrency": max_concurrency,
            "timeout_sec": timeout_sec,
            "max_retries": max_retries,
            "price_input_per_mtok": price_input_per_mtok,
            "price_output_per_mtok": price_output_per_mtok,
        }
        if collect_rollout_details:
            # Log-probabilities (OpenAI field) and token ids (vLLM's return_token_ids), unless
            # the caller's extra_body says otherwise.
            config["extra_body"] = {"logprobs": True, "return_token_ids": True,
                                    **config["extra_body"]}  # fmt: skip
        if api_key is not None:
            config["api_key"] = api_key
        self.llm_config = LLMConfig(**config)
        self.template = template
        self.max_turns = max_turns
        self.strict_timing = strict_timing
        self.pane = (pane_width, pane_height)
        self.provider = model_provider
        self.enable_summarize = enable_summarize
        self.proactive_threshold = proactive_summarization_threshold
        self.context_window = context_window or DEFAULT_CONTEXT_WINDOW
        self.record_terminal_session = record_terminal_session
        self.collect_rollout_details = collect_rollout_details
        # tmux control-mode clients for the terminal's calls (False: an exec of a tmux client
        # per call, as before; what the model sees is the same either way)
        self.tmux_control = tmux_control
        self.tmux: TmuxSession | None = None
        self.markers: list[tuple[float, str]] = []  # (time.time(), label) per turn

    def version(self) -> str:
        return VERSION

    def model_info(self) -> ModelInfo | None:
        return ModelInfo(self.llm_config.model, self.provider)

    async def setup(self, sandbox: Sandbox, ctx: AgentContext) -> None:
        self.tmux = TmuxSession(
            sandbox,
            width=self.pane[0],
            height=self.pane[1],
            user=ctx.user,
            pane_log=PANE_LOG,
            recording=RECORDING if self.record_terminal_session else None,
            early_completion=not self.strict_timing,
            control=self.tmux_control,
        )
        await self.tmux.start()

    async def run(self, instruction: str, sandbox: Sandbox, ctx: AgentContext) -> None:
        if self.tmux is None:
            raise AgentError("terminus-2: run() before setup()")
        ctx.metadata["recording"] = self.tmux.recording_active
        run = _Run(self, instruction, ctx)
        async with LLMClient(self.llm_config) as llm:
            try:
                await run.loop(llm, self.tmux)
            finally:
                run.flush()

    async def preflight(self) -> str:
        """One short request with this agent's model settings (sampling parameters and
        extra_body included), before any container starts: a wrong URL, key or model name, or
        a parameter the endpoint refuses, then fails once instead of in every trial. Raises
        LLMError; returns a line describing the answer."""
        return await check_endpoint(self.llm_config)

    def harness_processes(self) -> list[str]:
        """Command-line prefixes of the harness's own helpers in the container besides its
        tmux server and shell (the pane's logger). When these, the server and a shell at its
        prompt are all that runs after the agent, the trial may stop them and verify in the
        agent's container (trial.py)."""
        return list(self.tmux.harness) if self.tmux is not None else []

    def finish(self, ctx: AgentContext) -> None:
        """Merge the keystrokes sent and a marker per turn into the copied-out recording."""
        if self.tmux is None or not self.tmux.recording_active:
            return
        merge_recording(
            ctx.logs_dir / Path(RECORDING).name,
            inputs=self.tmux.keystrokes,
            markers=self.markers,
        )


def merge_recording(
    path: Path, *, inputs: list[tuple[float, str]], markers: list[tuple[float, str]]
) -> None:
    """Add input ("i") and marker ("m") events, given as (unix time, text), to an asciinema v2
    recording, in time order with its output events. A missing or headerless file is left."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        header = json.loads(lines[0])
        t0 = float(header["timestamp"])
    except (OSError, IndexError, ValueError, KeyError, TypeError):
        return
    events: list[tuple[float, int, str]] = []
    for i, line in enumerate(lines[1:]):
        try:
            events.append((float(json.loads(line)[0]), i, line))
        except (ValueError, IndexError, TypeError):
            continue  # a line cut by the recording's size cap
    n = len(lines)  # added events sort after output events of the same time
    for j, (kind, items) in enumerate((("i", inputs), ("m", markers))):
        for k, (t, text) in enumerate(items):
            at = max(0.0, round(t - t0, 6))
            events.append((at, n + j * len(inputs) + k, json.dumps([at, kind, text])))
    events.sort()
    body = "\n".join([lines[0], *(e[2] for e in events)]) + "\n"
    write_json_atomic(path, body, fsync=False)


class _Run:
    """One trajectory: its history (history.py: the messages, contexts and ATIF steps in one
    list) and counters, flushed after a turn at most every FLUSH_EVERY_SEC, and at the end."""

    def __init__(self, agent: Terminus2Agent, instruction: str, ctx: AgentContext) -> None:
        self.agent = agent
        self.instruction = instruction
        self.ctx = ctx
        self.history = History()
        self.trajectory_id = str(uuid.uuid4())
        self.request_ms: list[float] = []
        self.n_turns = 0
        self.ended = "running"
        self.used_tokens = 0  # context size after the last call (prompt + completion tokens)
        self.n_truncated = 0  # responses cut at the output limit and asked again
        self.tmux: TmuxSession | None = None
        self.flushed_at = float("-inf")
        self._writing: concurrent.futures.Future[None] | None = None

    @property
    def n_summaries(self) -> int:
        return self.history.current

    def _observe(self, text: str) -> None:
        """The next user message: the observation of the answer before it (sent by the next
        turn, unless the run ends or a summarization's handoff replaces it)."""
        self.history.add(Entry("user", text))

    async def loop(self, llm: LLMClient, tmux: TmuxSession) -> None:
        initial = limit_output_length(await tmux.get_incremental_output())
        prompt = render_prompt(self.instruction, initial, self.agent.template)
        self.history.add(Entry("user", prompt, step=True, timestamp=_now()))
        self.tmux = tmux
        history = self.history
        pending_completion = False
        truncations = 0  # consecutive responses cut at the output limit
        while self.n_turns < self.agent.max_turns:
            # The observation was captured from the session a moment ago: that counts.
            if not await tmux.is_alive(max_age_sec=1.0):
                self.ended = "tmux_session_ended"
                return
            await self._maybe_summarize_proactively(llm)
            sent = history.last
            sent.context = history.current
            try:
                response = await llm.chat(history.chat())
            except ContextLengthExceededError as exc:
                sent.context = None  # taken back
                if not self.agent.enable_summarize or not history.context():
                    # The trajectory ends here; the verifier scores the work done so far. (With
                    # nothing before it, the first prompt alone is over the model's context:
                    # there is nothing to summarize and the model cannot see the task.)
                    self.ended = "context_length_exceeded"
                    self.ctx.metadata["context_length_error"] = str(exc)[:500]
                    return
                response = await self._summarize_passively(llm)
            self._account(response)
            if response.usage.prompt_tokens:
                self.used_tokens = response.usage.prompt_tokens + response.usage.completion_tokens
            parse = parse_xml_response if self.agent.template == "xml" else parse_json_response
            cut = response.finish_reason == "length"
            if cut and self.agent.template == "xml":
                salvaged = salvage_xml_response(response.content)
                if salvaged is not None:  # a complete response before the cut: use it
                    response = dataclasses.replace(response, content=salvaged)
                    cut = False
            answer = history.add(Entry.answer(
                response, timestamp=_now(), context=history.current,
                details=self.agent.collect_rollout_details,
            ))  # fmt: skip
            if answer.token_details is not None:
                self._add_rollout_details(answer.token_details)
            if cut and truncations < MAX_OUTPUT_LENGTH_RETRIES:
                # Nothing is executed; the model is asked to re-issue in smaller pieces. As in
                # Harbor this is part of the same episode: it does not count as a turn.
                truncations += 1
                self.n_truncated += 1
                answer.cut = True
                self._observe(output_length_message(
                    self.agent.llm_config.max_tokens, parse(response.content).warning_text
                ))  # fmt: skip
                self.flush(every=FLUSH_EVERY_SEC)
                continue
            truncations = 0
            self.n_turns += 1
            parsed = parse(response.content)
            if parsed.error:
                answer.parse_error = True
                self._observe(
                    parse_error_message(parsed.error, parsed.warning_text, self.agent.template)
                )
                self.flush(every=FLUSH_EVERY_SEC)
                continue
            calls = [
                {
                    "tool_call_id": f"call_{self.n_turns}_{i}",
                    "function_name": "bash_command",
                    "arguments": {"keystrokes": c.keystrokes, "duration": c.duration},
                }
                for i, c in enumerate(parsed.commands, start=1)
            ]
            if parsed.task_complete:
                calls.append({"tool_call_id": f"call_{self.n_turns}_task_complete",
                              "function_name": "mark_task_complete", "arguments": {}})  # fmt: skip
            answer.tool_calls = calls
            self.agent.markers.append(
                (time.time(), f"Episode {self.n_turns - 1}: {len(parsed.commands)} commands")
            )
            waited, early = 0.0, 0
            for i, command in enumerate(parsed.commands, start=1):
                res = await tmux.send_keys(
                    command.keystrokes,
                    wait_sec=command.duration,
                    max_wait_sec=MAX_COMMAND_WAIT_SEC,
                    capture=i == len(parsed.commands),  # the observation follows at once
                )
                waited += res.waited_sec
                early += res.ended_early
            answer.command_wait_sec, answer.commands_ended_early = waited, early
            output = limit_output_length(await tmux.get_incremental_output())
            if parsed.task_complete:
                if pending_completion:
                    self._observe(output)  # the final screen: never sent
                    self.ended = "task_complete"
                    self.ctx.metadata["task_complete"] = True
                    return
                pending_completion = True
                prompt = completion_message(output)
            else:
                pending_completion = False
                prompt = output
            if parsed.warnings:
                prompt = WARNINGS_PREFIX.format(warnings=parsed.warning_text) + prompt
            self._observe(prompt)
            self.flush(every=FLUSH_EVERY_SEC)
        self.ended = "max_turns"

    def _add_rollout_details(self, details: dict[str, list[Any]]) -> None:
        """Token ids and logprobs of a main-loop call (also on its ATIF step), appended (one
        list per call) to the trial's rollout_details[0], as Harbor keeps them."""
        if not self.ctx.rollout_details:
            self.ctx.rollout_details.append(
                {"prompt_token_ids": [], "completion_token_ids": [], "logprobs": [], "extra": {}}
            )
        main = self.ctx.rollout_details[0]
        for key in ("prompt_token_ids", "completion_token_ids", "logprobs"):
            main[key].append(details.get(key, []))

    def _account(self, r: LLMResponse) -> None:
        self.ctx.add_usage(
            input_tokens=r.usage.prompt_tokens,
            output_tokens=r.usage.completion_tokens,
            cache_tokens=r.usage.cached_tokens,
            cost_usd=r.cost_usd,
        )
        self.request_ms.append(round(r.latency_sec * 1000, 1))

    # -- summarization ------------------------------------------------------------------------

    async def _maybe_summarize_proactively(self, llm: LLMClient) -> None:
        """Before the next prompt (the last entry) is sent: when the free context is below the
        threshold, summarize; the handoff then replaces the prompt."""
        agent = self.agent
        if not agent.enable_summarize or agent.proactive_threshold <= 0 or self.used_tokens == 0:
            return
        prompt = self.history.last.content
        free = agent.context_window - self.used_tokens - estimate_tokens([{"content": prompt}])
        if free >= agent.proactive_threshold:
            return
        try:
            self.history.add(Entry("user", await self._handoff(llm, kind="proactive")))
        except LLMError as exc:  # as Harbor: a failed proactive summary is not fatal
            self.ctx.metadata.setdefault("summarization_errors", []).append(str(exc)[:300])

    async def _summarize_passively(self, llm: LLMClient) -> LLMResponse:
        """The prompt did not fit: unwind, hand off (with fallbacks), and send the handoff."""
        history = self.history
        held = history.context()
        chat = [e.message(reasoning=False) for e in held]
        self.used_tokens = unwind(chat, self.agent.context_window, self.used_tokens)
        for e in held[len(chat) :]:
            e.context = None  # unwound (still ATIF steps)
        try:
            prompt = await self._handoff(llm, kind="passive")
        except LLMError:
            prompt = await self._short_handoff(llm)
        history.add(Entry("user", prompt, context=history.current))
        try:
            return await llm.chat(history.chat())
        except LLMError:
            return LLMResponse(
                content=TECHNICAL_DIFFICULTIES,
                reasoning=None,
                finish_reason=None,
                usage=TokenUsage(0, 0, 0),
                cost_usd=None,
                latency_sec=0.0,
                n_retries=0,
                model=self.agent.llm_config.model,
                raw={},
            )

    async def _call(self, llm: LLMClient, chat: list[dict[str, str]], name: str) -> LLMResponse:
        response = await llm.chat(chat)
        self._account(response)
        n = self.n_summaries + 1
        _write(
            self.ctx.logs_dir / f"summarization-{n}-{name}.json",
            [*chat, {"role": "assistant", "content": response.text_with_reasoning}],
        )
        return response

    async def _handoff(self, llm: LLMClient, kind: str) -> str:
        """The three handoff calls; then the next context opens with the first prompt and the
        questions exchange. Returns the handoff prompt (the answers)."""
        assert self.tmux is not None
        history = self.history
        instruction = self.instruction
        chat = history.chat()
        summary_prompt = SUMMARY_PROMPT.format(instruction=instruction)
        summary = await self._call(
            llm, [*chat, {"role": "user", "content": summary_prompt}], "summary"
        )
        screen = await self.tmux.capture(full_history=False)
        questions_prompt = QUESTIONS_PROMPT.format(
            instruction=instruction, summary=summary.content, screen=screen
        )
        questions = await self._call(
            llm, [{"role": "user", "content": questions_prompt}], "questions"
        )
        answers = await self._call(
            llm,
            [
                *chat,
                {"role": "user", "content": summary_prompt},
                {"role": "assistant", "content": summary.content},
                {"role": "user", "content": ANSWERS_PROMPT.format(questions=questions.content)},
            ],
            "answers",
        )
        _write(self.ctx.logs_dir / f"messages.ctx-{history.current + 1}.json", history.messages())
        history.current += 1
        n = history.current
        history.add(Entry("user", questions_prompt, context=n))
        history.add(Entry("assistant", questions.content, questions.reasoning, context=n))
        self.used_tokens = estimate_tokens(history.chat())
        history.add(Entry("system", SUMMARIZATION_MESSAGE, step=True, timestamp=_now(),
                          summarization=(kind, n)))  # fmt: skip
        return HANDOFF_PROMPT.format(answers=answers.content)

    async def _short_handoff(self, llm: LLMClient) -> str:
        assert self.tmux is not None
        screen = (await self.tmux.capture(full_history=False))[-1000:]
        try:
            short = await llm.chat([{
                "role": "user",
                "content": SHORT_SUMMARY_PROMPT.format(instruction=self.instruction, screen=screen),
            }])  # fmt: skip
            self._account(short)
            return SHORT_SUMMARY_HANDOFF.format(instruction=self.instruction, summary=short.content)
        except LLMError:
            return LAST_RESORT_HANDOFF.format(instruction=self.instruction, screen=screen)

    def flush(self, *, every: float = 0.0) -> None:
        """Write messages.json and trajectory.json; with `every`, only if the last write is
        that many seconds old.

        With `every` (while the agent runs) the files are encoded here, compact, and written by
        the process's file writer thread (skipped while this run's previous write is still
        under way); without (when the agent stops) they are written here, indented, once the
        earlier writes are done, so they are complete when `run()` returns."""
        if time.monotonic() - self.flushed_at < every:
            return
        if every and self._writing is not None and not self._writing.done():
            return
        self.flushed_at = time.monotonic()
        ctx, agent = self.ctx, self.agent
        ctx.metadata.update(
            n_episodes=self.n_turns,
            api_request_times_msec=self.request_ms,
            summarization_count=self.n_summaries,
            output_length_errors=self.n_truncated,
            ended=self.ended,
            template=agent.template,
            early_completion=not agent.strict_timing,
        )
        logs: Path = ctx.logs_dir
        steps = self.history.steps(agent.llm_config.model)
        costs = [s["metrics"]["cost_usd"] for s in steps if s.get("metrics")]
        trajectory = {
            "schema_version": "ATIF-v1.5",
            "session_id": ctx.trial_name or self.trajectory_id,
            "trajectory_id": self.trajectory_id,
            "agent": {
                "name": agent.name,
                "version": VERSION,
                "model_name": agent.llm_config.model,
                "extra": {"template": agent.template, "strict_timing": agent.strict_timing},
            },
            "steps": steps,
            "final_metrics": {
                "total_prompt_tokens": ctx.n_input_tokens,
                "total_completion_tokens": ctx.n_output_tokens,
                "total_cached_tokens": ctx.n_cache_tokens,
                "total_cost_usd": sum(c for c in costs if c is not None)
                if any(c is not None for c in costs)
                else None,
                "total_steps": len(steps),
                "extra": {"ended": self.ended},
            },
        }
        if every:
            files = [(logs / "messages.json", json.dumps(self.history.messages(), ensure_ascii=False)),
                     (logs / "trajectory.json", json.dumps(trajectory, ensure_ascii=False))]  # fmt: skip
            self._writing = _file_writer().submit(_write_texts, files)
            return
        if self._writing is not None:
            with contextlib.suppress(Exception):  # written again just below
                self._writing.result()
            self._writing = None
        _write(logs / "messages.json", self.history.messages())
        _write(logs / "trajectory.json", trajectory)


def _write_texts(files: list[tuple[Path, str]]) -> None:
    for path, text in files:
        try:
            write_json_atomic(path, text, fsync=False)
        except OSError as exc:
            log.warning("cannot write %s: %s", path, exc)


def _write(path: Path, data: Any) -> None:
    # Rewritten every turn and not a commit point (result.json is): no fsync on this path.
    write_json_atomic(path, json.dumps(data, indent=2, ensure_ascii=False), fsync=False)
