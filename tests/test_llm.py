"""LLMClient against the scripted OpenAI-compatible server, over real sockets."""

from __future__ import annotations

import asyncio
import re
import resource
import socket
import time
from typing import Any

import aiohttp
import pytest

from ttgen import llm as llm_module
from ttgen.errors import LLMError
from ttgen.llm import (
    ContextLengthExceededError,
    LLMClient,
    LLMConfig,
    LLMRequestError,
    LLMUsage,
    endpoint_semaphore,
    pooled_sessions,
    split_reasoning,
)
from ttgen.testing import Drop, Error, Malformed, Reply, ScriptedLLMServer, Slow

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hi."},
]


@pytest.fixture(autouse=True)
def _no_api_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TTGEN_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def config(server: ScriptedLLMServer, **kw: Any) -> LLMConfig:
    """Millisecond retry waits so that retry tests stay fast."""
    values: dict[str, Any] = {
        "model": "test-model",
        "base_url": server.base_url,
        "retry_min_wait_sec": 0.001,
        "retry_max_wait_sec": 0.01,
    }
    values.update(kw)
    return LLMConfig(**values)


async def chat(server: ScriptedLLMServer, **kw: Any):
    async with LLMClient(config(server, **kw)) as llm:
        return await llm.chat(MESSAGES)


# -- plain requests ------------------------------------------------------------------------------


async def test_plain_reply() -> None:
    async with ScriptedLLMServer(["Hi."]) as server:
        response = await chat(server)
        assert response.content == "Hi."
        assert response.reasoning is None
        assert response.text_with_reasoning == "Hi."
        assert response.finish_reason == "stop"
        assert response.n_retries == 0
        assert response.model == "test-model"
        assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens == 0
        assert response.cost_usd is None  # no prices configured
        assert response.latency_sec > 0
        assert response.raw["choices"][0]["message"]["content"] == "Hi."
        [request] = server.requests
        # Unset sampling parameters are not sent at all.
        assert request.body == {"model": "test-model", "messages": MESSAGES}
        assert "authorization" not in request.headers
        assert request.headers["content-type"] == "application/json"


async def test_sampling_params_and_extra_body_sent_exactly() -> None:
    extra = {"chat_template_kwargs": {"enable_thinking": True}, "top_k": 20}
    async with ScriptedLLMServer(["a", "b"]) as server:
        cfg = config(server, temperature=0.6, top_p=0.95, max_tokens=1024, extra_body=extra)
        async with LLMClient(cfg) as llm:
            await llm.chat(MESSAGES)
            await llm.chat(MESSAGES, extra_body={"max_tokens": 16, "seed": 7})
        assert server.requests[0].body == {
            "model": "test-model",
            "messages": MESSAGES,
            "temperature": 0.6,
            "top_p": 0.95,
            "max_tokens": 1024,
            "chat_template_kwargs": {"enable_thinking": True},
            "top_k": 20,
        }
        # Per-call extra_body overrides for that call only.
        assert server.requests[1].body["max_tokens"] == 16
        assert server.requests[1].body["seed"] == 7
        assert server.requests[1].body["temperature"] == 0.6


async def test_api_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    async with ScriptedLLMServer(["a", "b", "c"]) as server:
        await chat(server)
        monkeypatch.setenv("TTGEN_API_KEY", "sk-ttgen")  # wins over OPENAI_API_KEY
        await chat(server)
        await chat(server, api_key="sk-explicit")
        auth = [r.headers["Authorization"] for r in server.requests]
        assert auth == ["Bearer sk-openai", "Bearer sk-ttgen", "Bearer sk-explicit"]
    cfg = LLMConfig(model="m", base_url="http://x/v1/", api_key="sk-secret")
    assert "sk-secret" not in repr(cfg) and "api_key" not in cfg.model_dump()
    assert cfg.endpoint == "http://x/v1/chat/completions"


async def test_models_endpoint() -> None:
    async with (
        ScriptedLLMServer(model="served") as server,
        aiohttp.ClientSession() as session,
        session.get(server.base_url + "/models") as resp,
    ):
        data = await resp.json()
    assert data["data"][0]["id"] == "served"


# -- reasoning -----------------------------------------------------------------------------------


async def test_reasoning_content_gives_think_form() -> None:
    steps = [
        Reply("The answer is 4.", reasoning="\n2 + 2 = 4.\n"),
        Reply("ok", reasoning="via reasoning", reasoning_key="reasoning"),
    ]
    async with ScriptedLLMServer(steps) as server, LLMClient(config(server)) as llm:
        first = await llm.chat(MESSAGES)
        second = await llm.chat(MESSAGES)
    assert first.reasoning == "2 + 2 = 4."
    assert first.content == "The answer is 4."
    assert first.text_with_reasoning == "<think>\n2 + 2 = 4.\n</think>\n\nThe answer is 4."
    assert second.reasoning == "via reasoning"
    assert second.text_with_reasoning == "<think>\nvia reasoning\n</think>\n\nok"


async def test_inline_think_is_split_once() -> None:
    inline = "<think>\nLet me think.\n</think>\n\nDone."
    async with ScriptedLLMServer([inline]) as server:
        response = await chat(server)
    assert response.reasoning == "Let me think."
    assert response.content == "Done."
    assert response.text_with_reasoning == inline
    assert response.text_with_reasoning.count("<think>") == 1


@pytest.mark.parametrize(
    ("text", "reasoning", "answer"),
    [
        ("plain", None, "plain"),
        ("<think>a</think>b", "a", "b"),
        ("  <think>\n\n</think>\n\nb", None, "b"),  # empty block (thinking disabled)
        ("reasoning only\n</think>\n\nanswer", "reasoning only", "answer"),  # <think> in prompt
        ("<think>\ncut off while thin", "cut off while thin", ""),  # finish_reason "length"
        ("answer quoting <think> and </think>", None, "answer quoting <think> and </think>"),
    ],
)
def test_split_reasoning(text: str, reasoning: str | None, answer: str) -> None:
    assert split_reasoning(text) == (reasoning, answer)


async def test_finish_reason_length_is_not_an_error() -> None:
    async with ScriptedLLMServer([Reply("truncat", finish_reason="length")]) as server:
        response = await chat(server, max_tokens=2)
    assert response.finish_reason == "length"
    assert response.content == "truncat"


# -- retries ------------------------------------------------------------------------------------


async def test_429_retry_after_honoured() -> None:
    steps = [Error(429, "rate limited", retry_after=0.3), "ok"]
    async with ScriptedLLMServer(steps) as server:
        started = time.monotonic()
        response = await chat(server, retry_max_wait_sec=5)
        elapsed = time.monotonic() - started
        assert response.content == "ok"
        assert response.n_retries == 1
        gap = server.requests[1].received_at - server.requests[0].received_at
        assert gap >= 0.3 and elapsed < 2


async def test_retry_after_capped_by_max_wait() -> None:
    steps = [Error(429, "rate limited", retry_after=30), "ok"]
    async with ScriptedLLMServer(steps) as server:
        started = time.monotonic()
        response = await chat(server, retry_max_wait_sec=0.05)
        assert response.content == "ok"
        assert time.monotonic() - started < 2


async def test_5xx_burst_then_success() -> None:
    steps = [Error(500), Error(502, body="<html>Bad Gateway</html>"), Error(503), Error(500), "ok"]
    async with ScriptedLLMServer(steps) as server:
        response = await chat(server)
        assert response.content == "ok"
        assert response.n_retries == 4
        assert len(server.requests) == 5


@pytest.mark.parametrize("drop", [Drop(), Drop(partial=True)], ids=["no-response", "mid-body"])
async def test_dropped_connection_then_success(drop: Drop) -> None:
    async with ScriptedLLMServer([drop, "ok"]) as server:
        response = await chat(server)
        assert response.content == "ok"
        assert response.n_retries == 1


async def test_timeout_then_success() -> None:
    async with ScriptedLLMServer([Slow(2.0, "too late"), "ok"]) as server:
        started = time.monotonic()
        response = await chat(server, timeout_sec=0.2)
        assert response.content == "ok"
        assert response.n_retries == 1
        assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    "bad",
    [Malformed('{"choices": [ not json'), Malformed('{"choices": []}'), Malformed("")],
    ids=["broken-json", "no-choices", "empty"],
)
async def test_malformed_then_success(bad: Malformed) -> None:
    async with ScriptedLLMServer([bad, "ok"]) as server:
        response = await chat(server)
        assert response.content == "ok"
        assert response.n_retries == 1


async def test_retries_exhausted() -> None:
    async with ScriptedLLMServer(default=Error(503, "engine overloaded")) as server:
        async with LLMClient(config(server, max_retries=2)) as llm:
            with pytest.raises(LLMError) as info:
                await llm.chat(MESSAGES)
        assert len(server.requests) == 3
        text = str(info.value)
        assert server.base_url + "/chat/completions" in text
        assert "3 attempts" in text
        assert "HTTP 503" in text and "engine overloaded" in text
        assert isinstance(info.value, LLMRequestError)
        assert info.value.attempts == 3 and info.value.status == 503
        assert llm.usage.failed_calls == 1 and llm.usage.calls == 0


async def test_connection_refused_exhausts_retries() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = LLMConfig(
        model="m",
        base_url=f"http://127.0.0.1:{port}/v1",
        max_retries=1,
        retry_min_wait_sec=0.001,
        retry_max_wait_sec=0.01,
    )
    async with LLMClient(cfg) as llm:
        with pytest.raises(LLMError, match=r"2 attempts.*Connect"):
            await llm.chat(MESSAGES)


# -- errors that are not retried ----------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [Error.vllm_context_length(), Error.openai_context_length(), Error.sglang_context_length()],
    ids=["vllm", "openai", "sglang"],
)
async def test_context_length_not_retried(error: Error) -> None:
    async with ScriptedLLMServer([error, "never"]) as server:
        with pytest.raises(ContextLengthExceededError) as info:
            await chat(server)
        assert len(server.requests) == 1
        assert isinstance(info.value, LLMError)
        assert info.value.status == 400
        assert "context length" in str(info.value)


async def test_openai_context_code_alone_is_enough() -> None:
    body = {"error": {"message": "Request too large.", "code": "context_length_exceeded"}}
    async with ScriptedLLMServer([Error(400, body=body)]) as server:
        with pytest.raises(ContextLengthExceededError):
            await chat(server)
        assert len(server.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_not_retried(status: int) -> None:
    async with ScriptedLLMServer([Error(status, "Invalid API key provided"), "never"]) as server:
        with pytest.raises(LLMError) as info:
            await chat(server)
        assert not isinstance(info.value, ContextLengthExceededError)
        assert len(server.requests) == 1
        assert f"HTTP {status}" in str(info.value)
        assert "Invalid API key provided" in str(info.value)


async def test_exhausted_script_fails_fast() -> None:
    async with ScriptedLLMServer(["only"]) as server:
        async with LLMClient(config(server)) as llm:
            await llm.chat(MESSAGES)
            with pytest.raises(LLMError, match="script exhausted"):
                await llm.chat(MESSAGES)
        assert len(server.requests) == 2


# -- concurrency --------------------------------------------------------------------------------


async def test_concurrency_limit_shared_by_clients_of_an_endpoint() -> None:
    async with ScriptedLLMServer(default=Slow(0.1, "ok")) as server:
        a = LLMClient(config(server, max_concurrency=2))
        b = LLMClient(config(server, max_concurrency=2))
        async with a, b:
            calls = [(a if i % 2 else b).chat(MESSAGES) for i in range(6)]
            responses = await asyncio.gather(*calls)
        assert [r.content for r in responses] == ["ok"] * 6
        assert len(server.requests) == 6
        assert server.max_in_flight == 2


async def test_other_endpoints_have_their_own_limit() -> None:
    async with (
        ScriptedLLMServer(default=Slow(0.3, "ok")) as one,
        ScriptedLLMServer(default=Slow(0.3, "ok")) as two,
    ):
        a = LLMClient(config(one, max_concurrency=1))
        b = LLMClient(config(two, max_concurrency=1))
        async with a, b:
            await asyncio.gather(a.chat(MESSAGES), b.chat(MESSAGES))
        assert one.max_in_flight == 1 and two.max_in_flight == 1
        # Served side by side: had they shared a slot, the second would come 0.3 s later.
        assert abs(one.requests[0].received_at - two.requests[0].received_at) < 0.2


def test_endpoint_semaphore_is_per_event_loop() -> None:
    async def get() -> asyncio.Semaphore:
        first = endpoint_semaphore("http://h/v1", 3)
        assert endpoint_semaphore("http://h/v1/", 3) is first
        return first

    assert asyncio.run(get()) is not asyncio.run(get())

    async def registry_loops() -> list[asyncio.AbstractEventLoop]:
        endpoint_semaphore("http://h/v1", 3)
        return list(llm_module._SEMAPHORES)

    # Closed loops are dropped when a new loop registers.
    assert len(asyncio.run(registry_loops())) == 1


def _echo(body: dict[str, Any]) -> str:
    return f"echo: {body['messages'][-1]['content']}"


def _raise_fd_limit(needed: int) -> tuple[int, int] | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit when below ``needed``; returns the limits
    to restore (None when unchanged). Fails the test, saying why, when even the hard limit is
    too low (CI's machines allow far more)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"needs {needed} file descriptors; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return soft, hard
    return None


async def test_thousand_clients_share_one_pool_without_a_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1,000 clients of one endpoint (as 1,000 trials have), default config, one request each:
    all in flight at once over one shared session, none throttled by a default limit."""
    n = 1000
    # The client's and the server's ends of every connection live in this process.
    previous = _raise_fd_limit(2 * n + 200)
    try:
        async with ScriptedLLMServer(default=_echo, latency_sec=1.0) as server:
            cfg = LLMConfig(model="test-model", base_url=server.base_url)
            assert cfg.max_concurrency is None
            clients = [LLMClient(cfg) for _ in range(n)]
            started = time.monotonic()
            responses = await asyncio.gather(
                *(
                    client.chat([{"role": "user", "content": f"client {i}"}])
                    for i, client in enumerate(clients)
                )
            )
            elapsed = time.monotonic() - started
            sessions = {id(client._session) for client in clients}
            assert pooled_sessions() == 1 and pooled_sessions(server.base_url + "/") == 1
            shared = clients[0]._session
            assert shared is not None and not shared.closed
            await asyncio.gather(*(client.close() for client in clients))
            assert pooled_sessions() == 0 and shared.closed
            print(f"\n{n} clients: {elapsed:.2f} s, server max_in_flight={server.max_in_flight}")
            assert [r.content for r in responses] == [f"echo: client {i}" for i in range(n)]
            assert all(r.n_retries == 0 for r in responses)
            assert len(server.requests) == n
            assert server.max_in_flight == n
            assert sessions == {id(shared)}
            assert elapsed < 10
    finally:
        if previous is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, previous)


async def test_clients_sharing_a_pool_send_their_own_keys() -> None:
    async with ScriptedLLMServer(default=_echo) as server:
        a = LLMClient(config(server, api_key="sk-a"))
        b = LLMClient(config(server, api_key="sk-b"))
        anonymous = LLMClient(config(server, api_key=None))
        async with a, b, anonymous:
            await asyncio.gather(
                *(
                    client.chat([{"role": "user", "content": name}])
                    for name, client in [("a", a), ("b", b), ("none", anonymous)] * 3
                )
            )
            assert pooled_sessions() == 1
            assert a._session is b._session is anonymous._session
        assert pooled_sessions() == 0
        assert len(server.requests) == 9
        for request in server.requests:
            name = request.messages[-1]["content"]
            if name == "none":
                assert "authorization" not in request.headers
            else:
                assert request.headers["authorization"] == f"Bearer sk-{name}"
            assert request.headers["user-agent"].startswith("ttgen/")
            assert request.headers["content-type"] == "application/json"


async def test_max_concurrency_still_caps_in_flight() -> None:
    async with ScriptedLLMServer(default="ok", latency_sec=0.2) as server:
        clients = [LLMClient(config(server, max_concurrency=8)) for _ in range(32)]
        responses = await asyncio.gather(*(client.chat(MESSAGES) for client in clients))
        await asyncio.gather(*(client.close() for client in clients))
        assert [r.content for r in responses] == ["ok"] * 32
        assert server.max_in_flight == 8
        assert pooled_sessions() == 0


async def test_pool_reference_counting() -> None:
    async with ScriptedLLMServer(default="ok") as server, ScriptedLLMServer(default="ok") as two:
        a = LLMClient(config(server))
        b = LLMClient(config(server))
        other = LLMClient(config(two))
        assert pooled_sessions() == 0  # nothing opened before first use
        await a.chat(MESSAGES)
        await b.chat(MESSAGES)
        await other.chat(MESSAGES)
        assert pooled_sessions() == 2 and pooled_sessions(server.base_url) == 1
        assert a._session is b._session is not other._session
        shared = a._session
        assert shared is not None
        await a.close()
        await a.close()  # a second close releases nothing more
        assert pooled_sessions(server.base_url) == 1 and not shared.closed
        assert (await b.chat(MESSAGES)).content == "ok"
        await a.chat(MESSAGES)  # a closed client reopens: the same pool again
        assert a._session is shared
        await a.close()
        await b.close()
        assert shared.closed and pooled_sessions(server.base_url) == 0
        assert pooled_sessions() == 1
        await other.close()
        assert pooled_sessions() == 0
        # The next client of the endpoint gets a fresh session.
        async with LLMClient(config(server)) as c:
            assert (await c.chat(MESSAGES)).content == "ok"
            assert c._session is not shared and pooled_sessions() == 1
        assert pooled_sessions() == 0


def test_pooled_sessions_are_per_event_loop() -> None:
    async def use_and_leave_registered() -> int:
        async with ScriptedLLMServer(default="ok") as server:
            client = LLMClient(LLMConfig(model="m", base_url=server.base_url))
            await client.chat(MESSAGES)
            assert client._session is not None
            # Closed behind the registry's back (no release): the entry stays until pruned.
            await client._session.close()
            return id(asyncio.get_running_loop())

    asyncio.run(use_and_leave_registered())
    assert len(llm_module._SESSIONS) == 1
    # Closed loops' sessions are dropped when a new loop registers.
    asyncio.run(use_and_leave_registered())
    assert len(llm_module._SESSIONS) == 1
    llm_module._SESSIONS.clear()


async def test_dynamic_and_default_steps() -> None:
    def echo(body: dict[str, Any]) -> Reply:
        return Reply(f"echo: {body['messages'][-1]['content']}")

    async def later(body: dict[str, Any]) -> str:
        await asyncio.sleep(0)
        return "async"

    server = ScriptedLLMServer([echo, later], default="fallback", latency_sec=0.01)
    async with server, LLMClient(config(server)) as llm:
        got = [(await llm.chat(MESSAGES)).content for _ in range(3)]
    assert got == ["echo: Say hi.", "async", "fallback"]


# -- cost and usage -----------------------------------------------------------------------------


async def test_cost_from_configured_prices() -> None:
    usage = {
        "prompt_tokens": 1_000_000,
        "completion_tokens": 200_000,
        "prompt_tokens_details": {"cached_tokens": 400_000},
    }
    async with ScriptedLLMServer([Reply("a", usage=usage), Reply("b", usage=usage)]) as server:
        priced = await chat(
            server,
            price_input_per_mtok=2.0,
            price_output_per_mtok=10.0,
            price_cached_input_per_mtok=0.5,
        )
        no_cache_price = await chat(server, price_input_per_mtok=2.0, price_output_per_mtok=10.0)
    assert priced.usage.cached_tokens == 400_000
    # 600k uncached * $2 + 400k cached * $0.5 + 200k output * $10, per million
    assert priced.cost_usd == pytest.approx(1.2 + 0.2 + 2.0)
    assert no_cache_price.cost_usd == pytest.approx(2.0 + 2.0)


async def test_usage_accumulated() -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 10}
    steps = [Reply("a", usage=usage), Error(500), Reply("b", usage=usage), Error(401)]
    async with ScriptedLLMServer(steps) as server:
        cfg = config(server, price_input_per_mtok=1.0, price_output_per_mtok=2.0)
        async with LLMClient(cfg) as llm:
            await llm.chat(MESSAGES)
            await llm.chat(MESSAGES)
            with pytest.raises(LLMError):
                await llm.chat(MESSAGES)
    total = llm.usage
    assert (total.calls, total.failed_calls, total.retries) == (2, 1, 1)
    assert (total.prompt_tokens, total.completion_tokens, total.cached_tokens) == (200, 20, 0)
    assert total.cost_usd == pytest.approx(2 * (100 * 1.0 + 10 * 2.0) / 1e6)
    assert total.unpriced_calls == 0 and total.latency_sec > 0

    combined = LLMUsage()
    combined.merge(total)
    combined.merge(total)
    assert combined.calls == 4 and combined.cost_usd == pytest.approx(2 * total.cost_usd)
    unpriced = LLMUsage()
    assert unpriced.cost_usd is None


# -- proxy and ~/.netrc from the environment (looked up once per endpoint) ---------------------


class ForwardProxy:
    """A plain-HTTP forward proxy on a real socket: relays the bytes both ways to the host the
    first request line names, and keeps what the client sent (requests on a kept-alive
    connection included)."""

    def __init__(self) -> None:
        self.sent = b""

    @property
    def targets(self) -> list[str]:
        """The targets of the request lines sent (a POST's body is JSON: no line break)."""
        return re.findall(r"POST (\S+) HTTP/1\.1\r\n", self.sent.decode())

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        self.sent += head.encode()
        target = head.split(" ", 2)[1]  # absolute form: http://host:port/path
        host, port = target.split("/")[2].rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        up_writer.write(head.encode())

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if src is reader:
                    self.sent += data
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer),
                             return_exceptions=True)  # fmt: skip


@pytest.fixture
def _clean_proxy_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY", "no_proxy", "NO_PROXY"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "empty-netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp_path / "empty-netrc"))


@pytest.mark.usefixtures("_clean_proxy_env")
async def test_requests_go_through_the_environments_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    async with ScriptedLLMServer(default="ok") as server, ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://pu:pp@"))
        async with LLMClient(config(server, api_key="sk-x")) as llm:
            for _ in range(3):
                assert (await llm.chat(MESSAGES)).content == "ok"
        assert len(server.requests) == 3
        assert proxy.targets == [f"{server.base_url}/chat/completions"] * 3
        # the proxy's credentials from its URL; the endpoint's key still reaches the endpoint
        assert proxy.sent.decode().count("\r\nProxy-Authorization: Basic cHU6cHA=\r\n") == 3
        assert server.requests[0].headers["authorization"] == "Bearer sk-x"

        # NO_PROXY covering the endpoint's host: straight there
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with LLMClient(config(server)) as llm:
            assert (await llm.chat(MESSAGES)).content == "ok"
        assert len(proxy.targets) == 3 and len(server.requests) == 4


@pytest.mark.usefixtures("_clean_proxy_env")
async def test_netrc_credentials_only_where_the_client_has_no_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login nu password np\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    async with ScriptedLLMServer(default="ok") as server:
        keyed, anonymous = LLMClient(config(server, api_key="sk-k")), LLMClient(config(server))
        async with keyed, anonymous:
            # a key and a ~/.netrc entry for the same host: the key, no error
            assert (await keyed.chat(MESSAGES)).content == "ok"
            assert (await anonymous.chat(MESSAGES)).content == "ok"
    assert server.requests[0].headers["authorization"] == "Bearer sk-k"
    assert server.requests[1].headers["authorization"] == "Basic bnU6bnA="
