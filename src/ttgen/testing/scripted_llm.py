"""A scripted OpenAI-compatible chat-completions server over real sockets.

Tests and benchmarks point an `LLMClient` (or anything else that speaks the OpenAI API) at it::

    async with ScriptedLLMServer(["first answer", Error(429, "slow down", retry_after=0.1),
                                  "second answer"]) as server:
        config = LLMConfig(model="m", base_url=server.base_url)
        ...
        assert server.requests[0].body["messages"] == [...]

The server plays a *script*: one step per ``POST /v1/chat/completions``, in order of arrival.
A step is

* a ``str``: a normal completion with that content;
* `Reply`: content, reasoning (sent as ``message.reasoning_content``, as vLLM and SGLang do),
  finish reason, usage and a delay;
* `Error`: an HTTP error status with an OpenAI-shaped body (or any body), optionally with a
  ``Retry-After`` header; `Error.vllm_context_length` and friends build the bodies real servers
  send when the prompt is too long;
* `Drop`: close the connection without a response (or in the middle of the body);
* `Slow`: wait, then play another step;
* `Malformed`: a 200 whose body is the given text (e.g. broken JSON);
* a callable ``fn(request_json) -> step`` (or a coroutine function): decides per request.

When the script runs out the ``default`` step is played (a step or callable, e.g. a function
that always answers, for benchmarks); without one the server answers 410 "script exhausted",
which an `LLMClient` reports at once. ``latency_sec`` is added before every step.

``GET /v1/models`` lists the one model name. Every chat request is recorded in
``server.requests`` (parsed body, headers, the step played), and ``server.max_in_flight`` is
the most chat requests the server was handling at the same time.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import time
import uuid
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiohttp import web
from multidict import CIMultiDict


@dataclass(frozen=True)
class Reply:
    """A normal completion. ``usage`` (an OpenAI usage object) is estimated when not given."""

    content: str | None
    reasoning: str | None = None
    finish_reason: str | None = "stop"
    usage: dict[str, Any] | None = None
    delay_sec: float = 0.0
    reasoning_key: str = "reasoning_content"  # or "reasoning" (OpenRouter, newer vLLM)


@dataclass(frozen=True)
class Error:
    """An HTTP error. Without ``body``: ``{"error": {"message", "type", "code"}}`` (OpenAI's
    shape); ``body`` may be a dict (sent as JSON) or a string (sent as is)."""

    status: int
    message: str = "scripted error"
    body: dict[str, Any] | str | None = None
    retry_after: float | None = None  # seconds, sent as the Retry-After header

    @classmethod
    def vllm_context_length(cls, max_len: int = 32768, requested: int = 40000) -> Error:
        """The 400 vLLM's OpenAI server sends for a prompt over the model's context length."""
        message = (
            f"This model's maximum context length is {max_len} tokens. However, you requested "
            f"{requested} tokens ({requested - 16} in the messages, 16 in the completion). "
            "Please reduce the length of the messages or completion."
        )
        return cls(400, message, _server_bad_request(message))

    @classmethod
    def openai_context_length(cls) -> Error:
        """The 400 OpenAI's API sends (``code: context_length_exceeded``)."""
        message = (
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 130512 tokens. Please reduce the length of the messages."
        )
        body = {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        }
        return cls(400, message, body)

    @classmethod
    def sglang_context_length(cls, max_len: int = 32768, requested: int = 40000) -> Error:
        """The 400 SGLang sends."""
        message = (
            f"The input ({requested} tokens) is longer than the model's context length "
            f"({max_len} tokens)."
        )
        return cls(400, message, _server_bad_request(message))


def _server_bad_request(message: str) -> dict[str, Any]:
    """The error body vLLM's and SGLang's OpenAI servers send with a 400."""
    return {"object": "error", "message": message, "type": "BadRequestError", "param": None,
            "code": 400}  # fmt: skip


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering; ``partial``: after the headers and part of
    the body (the client sees the server disconnect mid-body)."""

    partial: bool = False


@dataclass(frozen=True)
class Slow:
    """Wait ``delay_sec``, then play ``then``."""

    delay_sec: float
    then: Step = "ok"


@dataclass(frozen=True)
class Malformed:
    """A 200 whose body is ``body_text`` (Content-Type application/json)."""

    body_text: str = '{"choices": [ not json'


StepFn: TypeAlias = Callable[[dict[str, Any]], "Step | Awaitable[Step]"]
Step: TypeAlias = str | Reply | Error | Drop | Slow | Malformed | StepFn


@dataclass
class RecordedRequest:
    """One chat request as the server received it."""

    body: Any  # the parsed JSON body; None when it was not JSON
    raw: bytes
    headers: CIMultiDict[str]  # case-insensitive: headers["authorization"]
    received_at: float  # time.monotonic()
    step: Any = None  # the step played (after resolving callables; the Slow wrapper if any)
    index: int = 0

    @property
    def messages(self) -> list[dict[str, Any]]:
        return (self.body or {}).get("messages", [])


def estimate_tokens(text: str) -> int:
    """A rough token count: one token per four characters."""
    return len(text) // 4


def _messages_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    parts: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "\n".join(parts)


@dataclass
class _State:
    script: deque[Step] = field(default_factory=deque)
    in_flight: int = 0
    max_in_flight: int = 0


class ScriptedLLMServer:
    """An OpenAI-compatible server on 127.0.0.1 that plays a script (see the module doc)."""

    def __init__(
        self,
        script: Iterable[Step] = (),
        *,
        default: Step | None = None,
        latency_sec: float = 0.0,
        model: str = "scripted-model",
        host: str = "127.0.0.1",
        port: int = 0,
        backlog: int = 2048,
    ) -> None:
        self.default = default
        # Connections the kernel queues before accept: a burst of 1,000 trials' first requests
        # must not overflow it (aiohttp's default is 128; uvicorn's, under vLLM and SGLang, 2048).
        self.backlog = backlog
        self.latency_sec = latency_sec
        self.model = model
        self.host = host
        self.requested_port = port
        self.requests: list[RecordedRequest] = []
        self._state = _State(script=deque(script))
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.requested_port, backlog=self.backlog)
        await site.start()
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ScriptedLLMServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- script and observations ---------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("ScriptedLLMServer is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def add(self, *steps: Step) -> None:
        """Append steps to the script."""
        self._state.script.extend(steps)

    @property
    def remaining(self) -> int:
        """Steps of the script not played yet (the default is not counted)."""
        return len(self._state.script)

    @property
    def in_flight(self) -> int:
        return self._state.in_flight

    @property
    def max_in_flight(self) -> int:
        return self._state.max_in_flight

    # -- handlers ------------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        data = {"object": "list", "data": [{"id": self.model, "object": "model"}]}
        return web.json_response(data)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        state = self._state
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            # No await between popping the step and recording: request i plays step i.
            step: Step | None = state.script.popleft() if state.script else self.default
            record = RecordedRequest(
                body=body,
                raw=raw,
                headers=CIMultiDict(request.headers),
                received_at=time.monotonic(),
                index=len(self.requests),
            )
            self.requests.append(record)
            if self.latency_sec:
                await asyncio.sleep(self.latency_sec)
            return await self._play(request, body, step, record)
        finally:
            state.in_flight -= 1
            if task is not None:
                self._tasks.discard(task)

    async def _play(
        self, request: web.Request, body: Any, step: Step | None, record: RecordedRequest
    ) -> web.StreamResponse:
        while callable(step):
            result = step(body if isinstance(body, dict) else {})
            step = await result if inspect.isawaitable(result) else result
        record.step = step
        while isinstance(step, Slow):
            await asyncio.sleep(step.delay_sec)
            step = step.then
            while callable(step):
                result = step(body if isinstance(body, dict) else {})
                step = await result if inspect.isawaitable(result) else result
        if step is None:
            return _error_response(
                Error(410, f"scripted LLM server: script exhausted after {record.index} requests")
            )
        if isinstance(step, str):
            step = Reply(step)
        if isinstance(step, Reply):
            if step.delay_sec:
                await asyncio.sleep(step.delay_sec)
            return web.json_response(self._completion(body, step))
        if isinstance(step, Error):
            return _error_response(step)
        if isinstance(step, Malformed):
            return web.Response(status=200, text=step.body_text, content_type="application/json")
        if isinstance(step, Drop):
            transport = request.transport
            if step.partial:
                response = web.StreamResponse(
                    headers={"Content-Type": "application/json", "Content-Length": "4096"}
                )
                await response.prepare(request)
                await response.write(b'{"id": "chatcmpl-partial", "choices": [')
                if transport is not None:
                    transport.close()
                return response
            if transport is not None:
                transport.close()
            return web.Response(status=200)
        raise TypeError(f"ScriptedLLMServer: not a script step: {step!r}")

    def _completion(self, body: Any, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.reasoning is not None:
            message[reply.reasoning_key] = reply.reasoning
        usage = reply.usage
        if usage is None:
            prompt = estimate_tokens(_messages_text(body))
            completion = estimate_tokens((reply.reasoning or "") + (reply.content or ""))
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        model = body.get("model") if isinstance(body, dict) else None
        choice: dict[str, Any] = {
            "index": 0, "message": message, "finish_reason": reply.finish_reason,
        }  # fmt: skip
        data: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model or self.model,
            "choices": [choice],
            "usage": usage,
        }
        if isinstance(body, dict) and (body.get("logprobs") or body.get("return_token_ids")):
            # As vLLM answers these: a made-up but deterministic tokenization (words and runs
            # of spaces), one log-probability per completion token, ids from a hash.
            pieces = _pieces((reply.reasoning or "") + (reply.content or ""))
            if body.get("logprobs"):
                choice["logprobs"] = {"content": [
                    {"token": p, "logprob": -round((zlib.crc32(p.encode()) % 1000) / 1000, 3),
                     "bytes": list(p.encode()), "top_logprobs": []}
                    for p in pieces
                ]}  # fmt: skip
            if body.get("return_token_ids"):
                choice["token_ids"] = [_token_id(p) for p in pieces]
                data["prompt_token_ids"] = [_token_id(p) for p in _pieces(_messages_text(body))]
        return data


def _pieces(text: str) -> list[str]:
    return re.findall(r"\S+|\s+", text)


def _token_id(piece: str) -> int:
    return zlib.crc32(piece.encode()) % 151_000


def _error_response(error: Error) -> web.Response:
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = f"{error.retry_after:g}"
    body = error.body
    if body is None:
        body = {"error": {"message": error.message, "type": "scripted_error", "code": error.status}}
    if isinstance(body, str):
        return web.Response(status=error.status, text=body, headers=headers)
    return web.json_response(body, status=error.status, headers=headers)
