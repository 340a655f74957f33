"""ttgen's Engine API client: against a real engine (calls, errors, attached exec streams) and
against a small HTTP server on a unix socket for what an engine does only sometimes (answers
in chunks, kept-alive connections it closes, answers cut off)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from pathlib import Path

import pytest

from conftest import BASE_IMAGE
from ttgen.sandbox import engine_client
from ttgen.sandbox.engine_client import DockerError, EngineClient, resolve_url

# -- a scripted HTTP server on a unix socket ----------------------------------------------------


class FakeEngine:
    """Answers each request with the next scripted reply: raw bytes; (bytes, "close"): those,
    then the connection is closed; None: closed without an answer."""

    def __init__(self, path: Path, replies: list) -> None:
        self.path = path
        self.replies = list(replies)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> FakeEngine:
        self.server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                lines = head.decode().split("\r\n")
                headers = {
                    k.strip().lower(): v.strip()
                    for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
                }
                body = b""
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                elif headers.get("transfer-encoding") == "chunked":
                    while True:
                        size = int((await reader.readline()).strip(), 16)
                        if size == 0:
                            await reader.readline()
                            break
                        body += await reader.readexactly(size)
                        await reader.readline()
                self.requests.append((lines[0], headers, body))
                reply = self.replies.pop(0)
                if reply is None:
                    return
                data, close = reply if isinstance(reply, tuple) else (reply, None)
                writer.write(data)
                await writer.drain()
                if close:
                    return
        finally:
            writer.close()


def _json_reply(obj, status: str = "200 OK") -> bytes:
    data = json.dumps(obj).encode()
    return f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n".encode() + (
        f"Content-Length: {len(data)}\r\n\r\n".encode() + data
    )


def _chunked_reply(parts: list[bytes]) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body


@pytest.fixture
def sock() -> Path:
    path = Path("/tmp") / f"ttgen-fake-{uuid.uuid4().hex[:8]}.sock"  # short: AF_UNIX limit
    yield path
    path.unlink(missing_ok=True)


async def test_calls_share_one_kept_alive_connection_and_read_every_body_kind(sock):
    replies = [
        _json_reply({"Version": "1.0"}),
        _chunked_reply([b'{"a": ', b"1}"]),
        b"HTTP/1.1 204 No Content\r\n\r\n",
        _json_reply({"Id": "abc"}, "201 Created"),
    ]
    async with FakeEngine(sock, replies) as engine, EngineClient(f"unix://{sock}") as client:
        assert (await client.version())["Version"] == "1.0"
        assert await client.call("GET", "x") == {"a": 1}
        assert await client.call("POST", "containers/abc/start") is None
        made = await client.containers.create({"Image": "i"}, name="n x")
        assert made.id == "abc"
        assert engine.connections == 1  # every call on the same connection
    line, headers, body = engine.requests[3]
    assert line == "POST /containers/create?name=n+x HTTP/1.1"
    assert json.loads(body) == {"Image": "i"} and headers["content-type"] == "application/json"
    assert engine.requests[2][1]["content-length"] == "0"


async def test_an_error_status_raises_with_the_engines_message(sock):
    replies = [_json_reply({"message": "No such image: nope:1"}, "404 Not Found"), _json_reply({})]
    async with FakeEngine(sock, replies) as engine, EngineClient(f"unix://{sock}") as client:
        with pytest.raises(DockerError) as err:
            await client.images.inspect("nope:1")
        assert err.value.status == 404 and err.value.message == "No such image: nope:1"
        assert "404" in str(err.value)
        await client.version()  # the connection is still good
        assert engine.connections == 1


async def test_a_kept_alive_connection_the_engine_closed_is_replaced_without_an_error(sock):
    # The engine drops the idle connection (answers nothing to the second call on it): the call
    # is sent again on a new connection and succeeds.
    replies = [_json_reply({"n": 1}), None, _json_reply({"n": 2})]
    async with FakeEngine(sock, replies) as engine, EngineClient(f"unix://{sock}") as client:
        assert (await client.call("GET", "a"))["n"] == 1
        assert (await client.call("GET", "b"))["n"] == 2
        assert engine.connections == 2


async def test_an_answer_cut_off_midway_is_an_error_and_the_next_call_works(sock):
    cut = b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial": '
    replies = [(cut, "close"), _json_reply({"ok": True})]
    async with FakeEngine(sock, replies) as engine, EngineClient(f"unix://{sock}") as client:
        with pytest.raises(ConnectionError, match=r"broke off|mid-answer"):
            await client.call("GET", "a")
        assert await client.call("GET", "b") == {"ok": True}
        assert engine.connections == 2


async def test_a_cancelled_call_leaves_no_half_read_connection_in_the_pool(sock):
    half = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"  # the rest never comes
    replies = [half, _json_reply({"ok": 1})]
    async with FakeEngine(sock, replies) as engine, EngineClient(f"unix://{sock}") as client:
        call = asyncio.ensure_future(client.call("GET", "slow"))
        while not engine.requests:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await client.call("GET", "next") == {"ok": 1}
        assert engine.connections == 2  # the half-read one was not reused


async def test_progress_streams_yield_objects_split_across_chunks(sock):
    accent = "Step 2/2: \u00e9t\u00e9".encode()  # two-byte characters, one split below
    parts = [b'{"stream": "Step 1/2"}\r\n{"str', b'eam": "' + accent[:11], accent[11:] + b'"}\r\n']
    parts.append(b'{"error": "boom"}')
    async with FakeEngine(sock, [_chunked_reply(parts)]), EngineClient(f"unix://{sock}") as c:
        seen = [obj async for obj in c.images.build(b"tar", tag="t:1", labels={"a": "b"})]
    assert seen == [
        {"stream": "Step 1/2"},
        {"stream": "Step 2/2: \u00e9t\u00e9"},
        {"error": "boom"},
    ]


# -- where the engine is ---------------------------------------------------------------------------


def test_the_address_comes_from_the_argument_docker_host_or_the_docker_context(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.5:2375")
    assert resolve_url("unix:///x.sock") == "unix:///x.sock"
    assert resolve_url() == "tcp://10.0.0.5:2375"
    monkeypatch.delenv("DOCKER_HOST")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "remote"}))
    meta = tmp_path / "contexts" / "meta" / hashlib.sha256(b"remote").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(
        json.dumps({"Name": "remote", "Endpoints": {"docker": {"Host": "unix:///ctx.sock"}}})
    )
    assert resolve_url() == "unix:///ctx.sock"
    monkeypatch.setenv("DOCKER_CONTEXT", "default")  # the default context: the usual sockets
    monkeypatch.setattr(engine_client, "DEFAULT_SOCKETS", (str(tmp_path / "docker.sock"),))
    with pytest.raises(ValueError, match=r"DOCKER_HOST is not set.*docker\.sock is a socket"):
        resolve_url()
    with pytest.raises(ValueError, match=r"ssh://h.*only unix://, tcp://"):
        EngineClient("ssh://h")


# -- against the real engine -------------------------------------------------------------------------


async def test_exec_streams_stdin_stdout_stderr_and_the_exit_code_on_the_real_engine(docker_ready):
    async with EngineClient() as docker:
        with pytest.raises(DockerError) as err:
            await docker.images.inspect(f"ttgen/no-such-image:{uuid.uuid4().hex[:8]}")
        assert err.value.status == 404 and "no-such-image" in err.value.message.lower()
        container = await docker.containers.create(
            {"Image": BASE_IMAGE, "Cmd": ["sleep", "60"], "Labels": {"ttgen.test": "client"}}
        )
        try:
            await container.start()
            ex = await container.exec(
                ["sh", "-c", "tr a-z A-Z; echo to-stderr >&2; exit 3"],
                stdin=True,
                environment={"X": "1"},
            )
            out, err_bytes = b"", b""
            async with ex.attach() as stream:
                await stream.write_in(b"hello " * 20_000)  # 120 kB: more than one frame
                stream.write_eof()
                while (msg := await stream.read_out()) is not None:
                    if msg.stream == 1:
                        out += msg.data
                    else:
                        err_bytes += msg.data
            assert out == b"HELLO " * 20_000
            assert err_bytes == b"to-stderr\n"
            assert (await ex.inspect())["ExitCode"] == 3
            listed = await docker.containers.list(filters={"label": ["ttgen.test=client"]})
            assert container.id in [c.id for c in listed]
        finally:
            await container.delete(force=True)
        with pytest.raises(DockerError) as gone:
            await container.show()
        assert gone.value.status == 404


async def test_a_burst_of_concurrent_calls_leaves_a_bounded_number_of_idle_connections(sock):
    n = engine_client.MAX_IDLE + 36
    async with FakeEngine(sock, [_json_reply({"ok": 1})] * n) as engine:
        async with EngineClient(f"unix://{sock}") as client:
            got = await asyncio.gather(*(client.call("GET", f"c{i}") for i in range(n)))
            assert got == [{"ok": 1}] * n
            assert engine.connections == n  # all at once: one connection each
            assert client.open_connections == engine_client.MAX_IDLE  # the rest were closed
        assert client.open_connections == 0
