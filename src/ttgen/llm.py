"""An async client for any OpenAI-compatible chat-completions endpoint (vLLM, SGLang, NIM,
hosted APIs), with retries, a per-endpoint concurrency limit and token/cost accounting.

    config = LLMConfig(model="Qwen/Qwen3-8B", base_url="http://localhost:8000/v1",
                       temperature=0.6, extra_body={"chat_template_kwargs": {"enable_thinking": True}})
    async with LLMClient(config) as llm:
        response = await llm.chat([{"role": "user", "content": "hi"}])
        response.content, response.reasoning, response.text_with_reasoning, response.cost_usd

Requests are ``POST {base_url}/chat/completions`` with ``model``, ``messages``, the sampling
parameters that are set (unset ones are not sent, so the server's defaults apply) and
``extra_body`` merged on top. No streaming.

Failures:

* A prompt over the model's context length (a 4xx/5xx whose message says so, in the shapes vLLM,
  SGLang, TGI and OpenAI use) raises `ContextLengthExceededError` at once, never retried: the
  caller has to shorten the conversation.
* Hitting the output limit is not an error: the response comes back with
  ``finish_reason == "length"``.
* Other client errors (400, 401, 403, 404, 422, ...) raise `LLMError` at once with the status
  and the server's message.
* 408, 409, 429, 5xx, timeouts, connection errors (refused, reset, disconnected mid-body),
  malformed JSON and responses without choices are retried with exponential backoff and full
  jitter (``Retry-After`` / ``retry-after-ms`` honoured, capped by ``retry_max_wait_sec``);
  after ``max_retries`` retries an `LLMError` names the endpoint, the last error and the number
  of attempts.

All these errors are `ttgen.errors.LLMError`s, which a trial records as ``llm_error``.

Concurrency: every client of the same ``base_url`` in the process (per event loop) shares one
HTTP session and connection pool, opened by the first client that needs it and closed when the
last one closes; the pool has no connection limit of its own. ``max_concurrency`` is None by
default: no limit of the client's own, because the caller already bounds the requests in flight
(a job of N trials, one request each at a time, has at most N), and a default cap would silently
throttle big jobs. Set it to cap the requests in flight to an endpoint: the clients of that
``base_url`` that set it share one semaphore of that many slots (the first sets its size); a
slot is held for one HTTP attempt, not during backoff sleeps. Each request carries its client's
own ``Authorization`` and ``User-Agent`` headers, so clients with different keys can share a
pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ttgen import __version__
from ttgen.errors import LLMError

if TYPE_CHECKING:  # aiohttp is imported when a client first talks to a model (a tenth of a
    import aiohttp  # second: not paid by commands that run no model)

log = logging.getLogger(__name__)

T = TypeVar("T")

ENV_API_KEYS = ("TTGEN_API_KEY", "OPENAI_API_KEY")

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def _env_api_key() -> str | None:
    for name in ENV_API_KEYS:
        value = os.environ.get(name)
        if value:
            return value
    return None


class LLMConfig(BaseModel):
    """Where and how to call a model. Prices are USD per million tokens (None: unknown cost)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    base_url: str  # e.g. http://localhost:8000/v1; requests go to {base_url}/chat/completions
    # Default: $TTGEN_API_KEY, then $OPENAI_API_KEY; None sends no Authorization header.
    # Never printed or dumped (repr, model_dump), so configs can be logged and saved.
    api_key: str | None = Field(default_factory=_env_api_key, repr=False, exclude=True)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict)  # merged into every request
    timeout_sec: float = Field(default=600.0, gt=0)  # per HTTP attempt
    max_retries: int = Field(default=6, ge=0)
    retry_min_wait_sec: float = Field(default=1.0, ge=0)
    retry_max_wait_sec: float = Field(default=60.0, ge=0)
    # Requests in flight per endpoint, shared by its clients; None: no limit of the client's own.
    max_concurrency: int | None = Field(default=None, ge=1)
    context_window: int | None = None  # max input tokens, for callers that manage context
    price_input_per_mtok: float | None = None
    price_output_per_mtok: float | None = None
    price_cached_input_per_mtok: float | None = None  # None: cached tokens cost the input price

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
        return value

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/chat/completions"

    def cost_usd(
        self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
    ) -> float | None:
        """USD for one call, or None when the input or output price is unknown.

        ``prompt_tokens`` includes ``cached_tokens`` (as OpenAI-compatible usage reports it).
        """
        if self.price_input_per_mtok is None or self.price_output_per_mtok is None:
            return None
        cached = min(max(cached_tokens, 0), prompt_tokens)
        cached_price = self.price_cached_input_per_mtok
        if cached_price is None:
            cached_price = self.price_input_per_mtok
        return (
            (prompt_tokens - cached) * self.price_input_per_mtok
            + cached * cached_price
            + completion_tokens * self.price_output_per_mtok
        ) / 1_000_000


# -- errors -----------------------------------------------------------------------------------


class ContextLengthExceededError(LLMError):
    """The prompt does not fit the model's context window. Never retried: shorten the messages
    (e.g. summarize) and call again."""

    def __init__(self, message: str, *, endpoint: str = "", status: int | None = None) -> None:
        self.endpoint = endpoint
        self.status = status
        self.server_message = message
        where = f"{endpoint}: " if endpoint else ""
        code = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"{where}context length exceeded ({code}{message})")


class LLMRequestError(LLMError):
    """The endpoint refused the request with a client error (not retried) or kept failing
    (``attempts`` > 1). ``status`` is the last HTTP status (None for a network error)."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        status: int | None = None,
        server_message: str | None = None,
        attempts: int = 1,
    ) -> None:
        self.endpoint = endpoint
        self.status = status
        self.server_message = server_message
        self.attempts = attempts
        super().__init__(message)


# Substrings (lower case) of the messages servers send for a prompt over the context length.
CONTEXT_LENGTH_MARKERS = (
    "context_length_exceeded",  # OpenAI's error code
    "maximum context length",  # vLLM, OpenAI: "This model's maximum context length is ..."
    "longer than the model's context length",  # SGLang
    "longer than the maximum model length",  # vLLM V1: "The decoder prompt (length N) is ..."
    "exceeds the model's context",
    "exceeds the context window",
    "context window exceeded",
    "context length exceeded",
    "too many tokens",
    "input is too long",
    "prompt is too long",  # Anthropic
    "`inputs` tokens + `max_new_tokens` must be",  # TGI
)


def is_context_length_message(text: str) -> bool:
    low = text.lower()
    return any(marker.lower() in low for marker in CONTEXT_LENGTH_MARKERS)


# -- responses and usage ----------------------------------------------------------------------


@dataclass(frozen=True)
class TokenUsage:
    """Tokens of one call; ``prompt_tokens`` includes ``cached_tokens``."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class LLMResponse:
    """One completion.

    ``content`` is the answer without reasoning; ``reasoning`` the model's thinking (from
    ``message.reasoning_content`` / ``message.reasoning``, or split off an inline
    ``<think>...</think>`` block at the start of the content), None when there was none.
    """

    content: str
    reasoning: str | None
    finish_reason: str | None
    usage: TokenUsage
    cost_usd: float | None
    latency_sec: float  # the whole chat() call: waiting for a slot, every attempt and backoff
    n_retries: int
    model: str
    raw: dict[str, Any] = field(repr=False)

    def token_details(self) -> dict[str, list[Any]] | None:
        """Token ids and log-probabilities where the server returned them (request them with
        ``logprobs: true``, and on vLLM ``return_token_ids: true``): prompt_token_ids,
        completion_token_ids, logprobs (one float per completion token). None when none came."""
        choices = self.raw.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        out: dict[str, list[Any]] = {}
        prompt_ids = self.raw.get("prompt_token_ids") or choice.get("prompt_token_ids")
        if isinstance(prompt_ids, list):
            out["prompt_token_ids"] = prompt_ids
        completion_ids = choice.get("token_ids")
        if isinstance(completion_ids, list):
            out["completion_token_ids"] = completion_ids
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
            out["logprobs"] = [
                float(t["logprob"])
                for t in logprobs["content"]
                if isinstance(t, dict) and isinstance(t.get("logprob"), int | float)
            ]
        return out or None

    @property
    def text_with_reasoning(self) -> str:
        """The assistant turn as reasoning chat templates (Qwen3, DeepSeek-R1) render it:
        ``<think>\\n{reasoning}\\n</think>\\n\\n{content}``; just ``content`` without reasoning.

        Leading/trailing newlines of the reasoning and leading newlines of the content are
        normalised, so the block appears exactly once in this canonical form however the
        server returned it.
        """
        return with_reasoning(self.reasoning, self.content)


def with_reasoning(reasoning: str | None, content: str) -> str:
    """``<think>\\n{reasoning}\\n</think>\\n\\n{content}`` (just ``content`` without reasoning), with
    the reasoning's outer newlines and the content's leading newlines normalised."""
    reasoning = (reasoning or "").strip("\n")
    if not reasoning:
        return content
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{content.lstrip(chr(10))}"


def split_reasoning(content: str) -> tuple[str | None, str]:
    """Split a leading inline ``<think>...</think>`` block off ``content``.

    Also handles output whose ``<think>`` was part of the prompt (DeepSeek-R1 style templates:
    the text has ``</think>`` but no opening tag) and an unterminated block (output cut off
    while thinking: everything is reasoning). Returns ``(reasoning or None, answer)``.
    """
    stripped = content.lstrip()
    if stripped.startswith(THINK_OPEN):
        body = stripped[len(THINK_OPEN) :]
        end = body.find(THINK_CLOSE)
        if end < 0:
            return (body.strip("\n") or None), ""
        reasoning = body[:end].strip("\n")
        return (reasoning or None), body[end + len(THINK_CLOSE) :].lstrip("\n")
    if THINK_OPEN not in content:
        end = content.find(THINK_CLOSE)
        if end >= 0:
            reasoning = content[:end].strip("\n")
            return (reasoning or None), content[end + len(THINK_CLOSE) :].lstrip("\n")
    return None, content


@dataclass
class LLMUsage:
    """Totals over many calls (a client keeps one for its lifetime: ``client.usage``).

    ``cost_usd`` sums the calls whose cost is known; it stays None while none was, and
    ``unpriced_calls`` counts the calls whose cost is unknown.
    """

    calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None
    unpriced_calls: int = 0
    retries: int = 0
    latency_sec: float = 0.0

    def add(self, response: LLMResponse) -> None:
        self.calls += 1
        self.prompt_tokens += response.usage.prompt_tokens
        self.completion_tokens += response.usage.completion_tokens
        self.cached_tokens += response.usage.cached_tokens
        if response.cost_usd is None:
            self.unpriced_calls += 1
        else:
            self.cost_usd = (self.cost_usd or 0.0) + response.cost_usd
        self.retries += response.n_retries
        self.latency_sec += response.latency_sec

    def merge(self, other: LLMUsage) -> None:
        """Add another accumulator's totals to this one."""
        self.calls += other.calls
        self.failed_calls += other.failed_calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        if other.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + other.cost_usd
        self.unpriced_calls += other.unpriced_calls
        self.retries += other.retries
        self.latency_sec += other.latency_sec


# -- the per-endpoint concurrency limit --------------------------------------------------------

# Semaphores belong to an event loop, so the registry is per loop. Entries of closed loops are
# pruned when a new loop registers (a weak-key dict would not free them: a semaphore that has
# been waited on holds a reference to its loop).
_SEMAPHORES: dict[asyncio.AbstractEventLoop, dict[str, tuple[asyncio.Semaphore, int]]] = {}


def _for_running_loop(registry: dict[asyncio.AbstractEventLoop, dict[str, T]]) -> dict[str, T]:
    """The running loop's entries of a per-loop registry (made on first use, when the entries
    of loops that have closed since are dropped)."""
    loop = asyncio.get_running_loop()
    per_loop = registry.get(loop)
    if per_loop is None:
        for old in [old for old in registry if old.is_closed()]:
            del registry[old]
        per_loop = registry[loop] = {}
    return per_loop


def endpoint_semaphore(base_url: str, limit: int) -> asyncio.Semaphore:
    """The semaphore shared by every client of ``base_url`` in the running event loop that
    sets ``max_concurrency`` (clients without a limit take no slot).

    The first caller for an endpoint sets the limit; a later, different limit is ignored
    (with a warning).
    """
    per_loop = _for_running_loop(_SEMAPHORES)
    key = base_url.rstrip("/")
    entry = per_loop.get(key)
    if entry is None:
        entry = per_loop[key] = (asyncio.Semaphore(limit), limit)
    elif entry[1] != limit:
        log.warning(
            "%s: max_concurrency=%d ignored; the endpoint's limit is already %d",
            key,
            limit,
            entry[1],
        )
    return entry[0]


# -- the model's typical latency, for the agent pacer -------------------------------------------

_LATENCY: dict[asyncio.AbstractEventLoop, dict[str, float]] = {}
LATENCY_WEIGHT = 0.2  # of each new call in the running average


def note_latency(seconds: float) -> None:
    """Add one answered call's time (waits for the endpoint's slot and retries included) to the
    running loop's average."""
    per_loop = _for_running_loop(_LATENCY)
    old = per_loop.get("")
    per_loop[""] = seconds if old is None else old + LATENCY_WEIGHT * (seconds - old)


def typical_latency() -> float | None:
    """The running average of the model calls answered in the running event loop (any
    endpoint), in seconds; None before the first (see ttgen.rollout.pacing)."""
    return _for_running_loop(_LATENCY).get("")


# -- the per-endpoint connection pool ----------------------------------------------------------


@dataclass
class _PooledSession:
    session: aiohttp.ClientSession
    refs: int = 0
    # what the environment says for this endpoint (see _from_environment)
    from_env: tuple[dict[str, Any], dict[str, str]] = ({}, {})


def _from_environment(base_url: str) -> tuple[dict[str, Any], dict[str, str]]:
    """What aiohttp's ``trust_env`` takes from the environment for requests to ``base_url``,
    looked up once per endpoint (with ``trust_env`` aiohttp reads the environment and ~/.netrc
    again on every request, in two trips to a thread pool: ~1 ms of CPU a request at 1,000
    trials): the proxy (``HTTPS_PROXY``/``HTTP_PROXY`` unless ``NO_PROXY`` covers the host)
    with its credentials (from its URL or ~/.netrc), and the endpoint's own credentials in
    ~/.netrc. Returns (keyword arguments of each request, headers added to each request; an
    ``Authorization`` among them is sent only by clients without a key of their own)."""
    from aiohttp.helpers import basicauth_from_netrc, get_env_proxy_for_url, netrc_from_env
    from yarl import URL

    url = URL(base_url)
    kwargs: dict[str, Any] = {}
    headers: dict[str, str] = {}
    with contextlib.suppress(LookupError):
        kwargs["proxy"], proxy_auth = get_env_proxy_for_url(url)
        if proxy_auth is not None:
            # https: in the tunnel's CONNECT; plain http: in the request the proxy forwards
            kwargs["proxy_headers"] = {"Proxy-Authorization": proxy_auth.encode()}
            if url.scheme == "http":
                headers["Proxy-Authorization"] = proxy_auth.encode()
    netrc = netrc_from_env()
    if netrc is not None and url.host:
        with contextlib.suppress(LookupError):
            headers["Authorization"] = basicauth_from_netrc(netrc, url.host).encode()
    return kwargs, headers


# One session (and connector) per endpoint per event loop, reference-counted by the clients
# using it; closed loops' entries are pruned like the semaphores'.
_SESSIONS: dict[asyncio.AbstractEventLoop, dict[str, _PooledSession]] = {}


def _acquire_session(base_url: str) -> _PooledSession:
    """A reference to the session shared by the clients of ``base_url`` in the running loop."""
    per_loop = _for_running_loop(_SESSIONS)
    key = base_url.rstrip("/")
    entry = per_loop.get(key)
    if entry is None or entry.session.closed:
        import aiohttp

        # No limit of its own, total or per host: a semaphore bounds the requests in flight
        # where the config asks for it. Keep-alive is on (aiohttp's default).
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        entry = per_loop[key] = _PooledSession(
            aiohttp.ClientSession(connector=connector), from_env=_from_environment(key)
        )
    entry.refs += 1
    return entry


def _release_session(
    loop: asyncio.AbstractEventLoop, base_url: str, session: aiohttp.ClientSession
) -> aiohttp.ClientSession | None:
    """Drop one reference taken by `_acquire_session`; returns the session when that was the
    last one (the caller closes it), else None."""
    per_loop = _SESSIONS.get(loop, {})
    key = base_url.rstrip("/")
    entry = per_loop.get(key)
    if entry is None or entry.session is not session:
        return None  # already replaced (the shared session was closed from outside)
    entry.refs -= 1
    if entry.refs > 0:
        return None
    del per_loop[key]
    if not per_loop:
        del _SESSIONS[loop]
    return session


def pooled_sessions(base_url: str | None = None) -> int:
    """How many shared HTTP sessions are open in the running event loop (for ``base_url``
    only, when given)."""
    per_loop = _SESSIONS.get(asyncio.get_running_loop(), {})
    if base_url is not None:
        entry = per_loop.get(base_url.rstrip("/"))
        return int(entry is not None and not entry.session.closed)
    return sum(not entry.session.closed for entry in per_loop.values())


# -- the client -------------------------------------------------------------------------------


class _Retryable(Exception):
    """An attempt failed in a way worth retrying."""

    def __init__(
        self, description: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(description)
        self.description = description
        self.status = status
        self.retry_after = retry_after


RETRY_STATUSES = frozenset({408, 409, 429})


class LLMClient:
    """Calls one model through an OpenAI-compatible endpoint. Use as an async context manager
    (or call `close`); the HTTP session is opened on first use in the running loop."""

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self.usage = LLMUsage()
        # Per-client headers go with each request: the session is shared by the endpoint's
        # clients, whatever their keys.
        self._headers = {"Content-Type": "application/json", "User-Agent": f"ttgen/{__version__}"}
        if config.api_key:
            self._headers["Authorization"] = f"Bearer {config.api_key}"
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # where the session reference is
        self._semaphore: asyncio.Semaphore | None = None
        self._from_env: dict[str, Any] = {}  # proxy and credentials, see _from_environment
        self._send_headers = self._headers

    async def __aenter__(self) -> LLMClient:
        self._ensure_session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Release this client's reference to the shared session (closing it if it was the
        last one). Closing twice is harmless; the client reopens on its next request."""
        last = self._release()
        if last is not None and not last.closed:
            await last.close()

    def _release(self) -> aiohttp.ClientSession | None:
        """Drop the session reference; returns the session when the caller should close it."""
        session, self._session = self._session, None
        loop, self._loop = self._loop, None
        self._semaphore = None
        if session is None or loop is None:
            return None
        last = _release_session(loop, self.config.base_url, session)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        # A session of another loop cannot be closed from here; a closed loop's is pruned.
        return last if last is not None and loop is running else None

    def _ensure_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or session.closed or self._loop is not loop:
            if session is not None:
                self._release()  # closed from outside, or left over from another event loop
            entry = _acquire_session(self.config.base_url)
            session = self._session = entry.session
            self._from_env, headers = entry.from_env
            self._send_headers = {**headers, **self._headers}  # the client's own key first
            self._loop = loop
            limit = self.config.max_concurrency
            self._semaphore = (
                endpoint_semaphore(self.config.base_url, limit) if limit is not None else None
            )
        return session

    def request_body(
        self, messages: Sequence[Mapping[str, Any]], extra_body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The JSON body `chat` sends."""
        cfg = self.config
        body: dict[str, Any] = {"model": cfg.model, "messages": [dict(m) for m in messages]}
        for name in ("temperature", "top_p", "max_tokens"):
            value = getattr(cfg, name)
            if value is not None:
                body[name] = value
        body.update(cfg.extra_body)
        if extra_body:
            body.update(extra_body)
        return body

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        extra_body: Mapping[str, Any] | None = None,
    ) -> LLMResponse:
        """One completion for ``messages``; ``extra_body`` is merged over the config's for this
        call only (e.g. ``{"max_tokens": 512}``)."""
        try:
            response = await self._chat(self.request_body(messages, extra_body))
        except LLMError:
            self.usage.failed_calls += 1
            raise
        self.usage.add(response)
        note_latency(response.latency_sec)
        return response

    async def _chat(self, body: dict[str, Any]) -> LLMResponse:
        cfg = self.config
        session = self._ensure_session()
        semaphore = self._semaphore
        payload = json.dumps(body).encode()
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=cfg.timeout_sec)
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            try:
                async with semaphore or contextlib.nullcontext():
                    data = await self._attempt(session, payload, timeout)
                return self._response(data, started, attempts - 1)
            except _Retryable as exc:
                last = exc
            if attempts > cfg.max_retries:
                raise LLMRequestError(
                    f"{cfg.endpoint}: gave up after {attempts} attempt"
                    f"{'s' if attempts != 1 else ''}; last error: {last.description}",
                    endpoint=cfg.endpoint,
                    status=last.status,
                    attempts=attempts,
                )
            delay = self._backoff(attempts, last.retry_after)
            log.info(
                "%s: %s; retry %d/%d in %.2fs",
                cfg.endpoint,
                last.description,
                attempts,
                cfg.max_retries,
                delay,
            )
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry number ``attempt`` (1-based)."""
        cfg = self.config
        if retry_after is not None:
            return max(0.0, min(retry_after, cfg.retry_max_wait_sec))
        cap = min(cfg.retry_max_wait_sec, cfg.retry_min_wait_sec * 2**attempt)
        return random.uniform(min(cfg.retry_min_wait_sec, cap), cap)

    async def _attempt(
        self, session: aiohttp.ClientSession, payload: bytes, timeout: aiohttp.ClientTimeout
    ) -> dict[str, Any]:
        import aiohttp

        endpoint = self.config.endpoint
        try:
            async with session.post(
                endpoint, data=payload, headers=self._send_headers, timeout=timeout,
                **self._from_env,
            ) as resp:
                status = resp.status
                raw = await resp.read()
                retry_after = _retry_after(resp.headers)
        except TimeoutError:
            raise _Retryable(f"timed out after {self.config.timeout_sec:g}s") from None
        except aiohttp.ClientError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from None

        text = raw.decode("utf-8", errors="replace")
        if status >= 300:
            message = _error_message(text)
            if status != 429 and _is_context_error(text, message):
                raise ContextLengthExceededError(message, endpoint=endpoint, status=status)
            if status in RETRY_STATUSES or status >= 500:
                raise _Retryable(f"HTTP {status}: {message}", status, retry_after)
            raise LLMRequestError(
                f"{endpoint}: HTTP {status}: {message}",
                endpoint=endpoint,
                status=status,
                server_message=message,
            )
        try:
            data = json.loads(text)
        except ValueError:
            raise _Retryable(f"malformed JSON in a {status} response: {text[:200]!r}") from None
        if not isinstance(data, dict) or not data.get("choices"):
            error = data.get("error") if isinstance(data, dict) else None
            if error is not None:  # some gateways send errors with status 200
                message = _error_message(text)
                if _is_context_error(text, message):
                    raise ContextLengthExceededError(message, endpoint=endpoint, status=status)
                raise _Retryable(f"error in a {status} response: {message}", status)
            raise _Retryable(f"response without choices: {text[:200]!r}", status)
        choice = data["choices"][0]
        if not isinstance(choice, dict) or not isinstance(choice.get("message", {}), dict):
            raise _Retryable(f"malformed choice in response: {text[:200]!r}", status)
        return data

    def _response(self, data: dict[str, Any], started: float, n_retries: int) -> LLMResponse:
        choice = data["choices"][0]
        message = choice.get("message") or {}
        content = _text(message.get("content"))
        reasoning = message.get("reasoning_content")
        if not isinstance(reasoning, str) or not reasoning:
            reasoning = message.get("reasoning")
        if isinstance(reasoning, str) and reasoning.strip("\n"):
            reasoning = reasoning.strip("\n")
            content = content.lstrip("\n")
        else:
            reasoning, content = split_reasoning(content)
        usage = _usage(data.get("usage"))
        cost = self.config.cost_usd(
            usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens
        )
        return LLMResponse(
            content=content,
            reasoning=reasoning,
            finish_reason=choice.get("finish_reason"),
            usage=usage,
            cost_usd=cost,
            latency_sec=time.monotonic() - started,
            n_retries=n_retries,
            model=str(data.get("model") or self.config.model),
            raw=data,
        )


def _text(content: Any) -> str:
    """Message content as text (a string, null, or a list of content parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
        )
    return str(content)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _usage(usage: Any) -> TokenUsage:
    if not isinstance(usage, dict):
        return TokenUsage()
    details = usage.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return TokenUsage(
        prompt_tokens=_int(usage.get("prompt_tokens")),
        completion_tokens=_int(usage.get("completion_tokens")),
        cached_tokens=cached,
    )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds; HTTP dates are ignored)."""
    for name, scale in (("retry-after-ms", 0.001), ("Retry-After", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return None


def _error_message(text: str) -> str:
    """The server's error message from an error body (OpenAI, vLLM, SGLang, FastAPI shapes)."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        for key in ("message", "detail"):
            if data.get(key):
                value = data[key]
                return value if isinstance(value, str) else json.dumps(value)
    text = text.strip()
    if len(text) > 500:
        text = text[:500] + "..."
    return text or "(empty body)"


def _is_context_error(text: str, message: str) -> bool:
    return is_context_length_message(message) or is_context_length_message(text)


# -- pre-flight -------------------------------------------------------------------------------

# Commands that will send many requests check the endpoint with this one first.
PREFLIGHT_PROMPT = "Reply with the single word OK."
PREFLIGHT_RETRIES = 2


async def check_endpoint(config: LLMConfig) -> str:
    """One short request with `config`'s settings (sampling parameters and extra_body
    included): a wrong URL, key or model name, or a parameter the endpoint refuses, then fails
    once, before any work starts, instead of in every item. Raises LLMError; returns a line
    describing the answer."""
    config = config.model_copy(update={"max_retries": min(config.max_retries, PREFLIGHT_RETRIES)})
    async with LLMClient(config) as llm:
        response = await llm.chat([{"role": "user", "content": PREFLIGHT_PROMPT}])
    return (
        f"{config.endpoint} answered as {response.model} in {response.latency_sec:.1f} s "
        f"({response.usage.prompt_tokens} + {response.usage.completion_tokens} tokens)"
    )
