"""A small client for the Docker Engine API (Docker, and Podman's Docker-compatible service).

HTTP/1.1 on asyncio streams over the engine's socket (unix://, tcp:// or https://), with a pool
of kept-alive connections that has no upper bound (what the engine is asked at once is bounded
by the backend's admission control, and an exec's attached stream holds its connection for as
long as the exec runs). It covers what ttgen asks of an engine: containers, execs with their
attached (hijacked) streams, archives, images (inspect, build, pull, import, tag, remove) and
networks.

Why not a general HTTP library: a ttgen command that runs one trial spends most of its time
importing things, and an HTTP client library with its TLS set-up cost a fifth of a second on our
machines before the first engine call. This module imports nothing outside the standard library,
and `ssl` only for an engine reached over TLS.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import json
import os
import struct
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode, urlsplit

DEFAULT_SOCKETS = ("/run/docker.sock", "/var/run/docker.sock")
CONNECT_TIMEOUT = 30.0  # seconds to open a connection to the engine
# Idle connections kept for the next calls; more are closed when their answer is read (a burst
# of 1,000 concurrent calls leaves no 1,000 sockets open, here and in the engine).
MAX_IDLE = 64
_MAX_HEADER_BYTES = 64 * 1024


class DockerError(Exception):
    """The engine answered a call with an error status: `status` (the HTTP code) and `message`
    (what the engine said, or the start of its answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return f"engine error {self.status}: {self.message}"


class Message(NamedTuple):
    """One frame of an attached stream: `stream` 1 (stdout) or 2 (stderr), and its bytes."""

    stream: int
    data: bytes


def resolve_url(url: str | None = None) -> str:
    """Where the engine is: `url`, else DOCKER_HOST, else the current Docker context's
    endpoint, else the first usual socket that exists. Raises ValueError when none is found."""
    if url:
        return url
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    from_context = _context_host()
    if from_context:
        return from_context
    for path in DEFAULT_SOCKETS:
        if Path(path).is_socket():
            return f"unix://{path}"
    raise ValueError(
        "no engine address: DOCKER_HOST is not set, the Docker context names none, and none of "
        + ", ".join(DEFAULT_SOCKETS)
        + " is a socket"
    )


def _context_host() -> str | None:
    """The engine address of the Docker CLI's current context (DOCKER_CONTEXT or the
    `currentContext` of ~/.docker/config.json), None for the default context or none."""
    config_dir = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    name = os.environ.get("DOCKER_CONTEXT")
    if not name:
        try:
            name = json.loads((config_dir / "config.json").read_text()).get("currentContext")
        except (OSError, ValueError, AttributeError):
            return None
    if not name or name == "default":
        return None
    meta = config_dir / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    try:
        found = json.loads((meta / "meta.json").read_text())
        return found["Endpoints"]["docker"]["Host"] or None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _tls_context() -> Any:
    """The TLS context for a tcp:// engine when DOCKER_TLS_VERIFY=1 (certificates in
    DOCKER_CERT_PATH, as the Docker CLI reads them); None otherwise."""
    if os.environ.get("DOCKER_TLS_VERIFY", "") in ("", "0"):
        return None
    import ssl

    certs = Path(os.environ.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.load_cert_chain(str(certs / "cert.pem"), str(certs / "key.pem"))
    return ctx


def _query(params: Mapping[str, Any] | None) -> str:
    if not params:
        return ""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "1" if value else "0"
        elif isinstance(value, dict | list):
            value = json.dumps(value)
        pairs.append((key, str(value)))
    return "?" + urlencode(pairs) if pairs else ""


class _Connection:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, owner: set
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False
        self._owner = owner  # the client's open connections: this one leaves it when closed
        owner.add(self)

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self._owner.discard(self)
        with contextlib.suppress(Exception):
            self.writer.close()


class Response:
    """An answer of the engine; its body is read with `read`/`json`/`text`/`chunks`."""

    def __init__(self, client: EngineClient, conn: _Connection, status: int, headers: dict) -> None:
        self._client = client
        self._conn: _Connection | None = conn
        self.status = status
        self.headers = headers
        length = headers.get("content-length")
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._left = int(length) if length is not None and not self._chunked else None
        self._chunk_left = 0
        self._done = status in (204, 304) or self._left == 0
        self._keep = headers.get("connection", "").lower() != "close" and (
            self._chunked or self._left is not None or self._done
        )
        if self._done:
            self._finish()

    def _finish(self) -> None:
        self._done = True
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._keep and conn.usable() and len(self._client._idle) < MAX_IDLE:
                self._client._idle.append(conn)
            else:
                conn.close()

    def release(self) -> None:
        """Give the connection up (closed when its body was not read to the end)."""
        if self._conn is not None:
            if not self._done:
                self._keep = False
            self._finish()

    async def _next(self, n: int) -> bytes:
        """Up to `n` bytes of the body; b"" at its end."""
        if self._done or self._conn is None:
            return b""
        reader = self._conn.reader
        try:
            if self._chunked:
                if self._chunk_left == 0:
                    line = await reader.readline()
                    size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        self._finish()
                        return b""
                    self._chunk_left = size
                data = await reader.read(min(n, self._chunk_left))
                if not data:
                    raise ConnectionError("the engine closed the connection mid-answer")
                self._chunk_left -= len(data)
                if self._chunk_left == 0:
                    await reader.readexactly(2)
                return data
            if self._left is not None:
                data = await reader.read(min(n, self._left))
                if not data:
                    raise ConnectionError("the engine closed the connection mid-answer")
                self._left -= len(data)
                if self._left == 0:
                    self._finish()
                return data
            data = await reader.read(n)  # until the engine closes it
            if not data:
                self._finish()
            return data
        except (asyncio.IncompleteReadError, ValueError) as exc:
            self._keep = False
            self._finish()
            raise ConnectionError(f"the engine's answer broke off: {exc!r}") from None
        except BaseException:
            self._keep = False
            self._finish()
            raise

    async def chunks(self, size: int = 256 * 1024) -> AsyncIterator[bytes]:
        while data := await self._next(size):
            yield data

    async def read(self) -> bytes:
        parts = [data async for data in self.chunks()]
        return b"".join(parts)

    async def text(self) -> str:
        return (await self.read()).decode("utf-8", "replace")

    async def json(self) -> Any:
        data = await self.read()
        return json.loads(data) if data.strip() else None

    async def json_stream(self) -> AsyncIterator[Any]:
        """The JSON objects of a progress stream (build, pull, import), one at a time."""
        decoder = json.JSONDecoder()
        text = codecs.getincrementaldecoder("utf-8")("replace")  # a character may span chunks
        buf = ""
        async for data in self.chunks(64 * 1024):
            buf += text.decode(data)
            while True:
                buf = buf.lstrip()
                if not buf:
                    break
                try:
                    obj, end = decoder.raw_decode(buf)
                except ValueError:
                    break  # the rest of it comes with the next chunk
                buf = buf[end:]
                yield obj
        if buf.strip():
            yield {"stream": buf}


class Stream:
    """The attached (hijacked) stream of an exec or a container: `write_in` to its stdin,
    `read_out` its stdout/stderr frames, `write_eof` to close its stdin, `close`."""

    def __init__(self, client: EngineClient, path: str, body: Any, tty: bool = False) -> None:
        self._client = client
        self._path = path
        self._body = body
        self._tty = tty
        self._conn: _Connection | None = None

    async def __aenter__(self) -> Stream:
        if self._conn is None:
            self._conn = await self._client._hijack(self._path, self._body)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def read_out(self) -> Message | None:
        """The next frame; None at the end of the stream."""
        if self._conn is None:
            await self.__aenter__()
        assert self._conn is not None
        reader = self._conn.reader
        if self._tty:
            data = await reader.read(64 * 1024)
            return Message(1, data) if data else None
        try:
            header = await reader.readexactly(8)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise ConnectionError("the attached stream ended inside a frame header") from None
            return None
        kind, size = header[0], struct.unpack(">I", header[4:])[0]
        try:
            data = await reader.readexactly(size)
        except asyncio.IncompleteReadError:
            raise ConnectionError("the attached stream ended inside a frame") from None
        return Message(kind if kind in (1, 2) else 1, data)

    async def write_in(self, data: bytes) -> None:
        if self._conn is None:
            await self.__aenter__()
        assert self._conn is not None
        self._conn.writer.write(data)
        await self._conn.writer.drain()

    def write_eof(self) -> None:
        """Half-close: the command reads EOF on its stdin; its output still comes."""
        if self._conn is not None and self._conn.writer.can_write_eof():
            self._conn.writer.write_eof()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()


class EngineClient:
    """One engine's API: `containers`, `images`, `networks`, `version()`, `request()`."""

    def __init__(self, url: str | None = None) -> None:
        self.url = resolve_url(url)
        parts = urlsplit(self.url)
        self._unix: str | None = None
        self._host = "localhost"
        self._port = 0
        self._ssl: Any = None
        if parts.scheme == "unix":
            self._unix = parts.path or parts.netloc
        elif parts.scheme in ("tcp", "http", "https"):
            if not parts.hostname:
                raise ValueError(f"engine address {self.url!r} names no host")
            self._host = parts.hostname
            self._ssl = _tls_context()
            if parts.scheme == "https" and self._ssl is None:
                import ssl

                self._ssl = ssl.create_default_context()
            self._port = parts.port or (2376 if self._ssl is not None else 2375)
        else:
            raise ValueError(
                f"engine address {self.url!r}: only unix://, tcp://, http:// and https:// "
                "are supported"
            )
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self.containers = Containers(self)
        self.images = Images(self)
        self.networks = Networks(self)

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection (attached streams included)."""
        self._idle.clear()
        for conn in list(self._open):
            conn.close()

    @property
    def open_connections(self) -> int:
        """Connections to the engine now open (idle, in use, attached streams)."""
        return len(self._open)

    async def _connect(self) -> _Connection:
        if self._unix is not None:
            opening = asyncio.open_unix_connection(self._unix, limit=1 << 20)
        else:
            opening = asyncio.open_connection(self._host, self._port, ssl=self._ssl, limit=1 << 20)
        reader, writer = await asyncio.wait_for(opening, CONNECT_TIMEOUT)
        return _Connection(reader, writer, self._open)

    async def _acquire(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                conn.reused = True
                return conn
            conn.close()
        return await self._connect()

    def _head(
        self, method: str, path: str, headers: Mapping[str, str], length: int | None
    ) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        elif method in ("POST", "PUT"):
            lines.append("Transfer-Encoding: chunked")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send(
        self, conn: _Connection, method: str, path: str, headers: dict[str, str], body: Any
    ) -> None:
        w = conn.writer
        if body is None or isinstance(body, bytes | bytearray | memoryview):
            data = bytes(body or b"")
            length = len(data) if body is not None or method in ("POST", "PUT") else None
            w.write(self._head(method, path, headers, length) + data)
            await w.drain()
            return
        w.write(self._head(method, path, headers, None))
        async for part in body:  # an async iterable of bytes: sent as it comes, chunked
            if part:
                w.write(b"%x\r\n%s\r\n" % (len(part), part))
                await w.drain()
        w.write(b"0\r\n\r\n")
        await w.drain()

    async def _answer(self, conn: _Connection) -> tuple[int, dict[str, str]]:
        try:
            head = await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:  # not a ConnectionResetError: part of an answer came, no retry
                raise ConnectionError("the engine closed the connection mid-answer") from None
            raise ConnectionResetError("the engine closed the connection") from None
        except asyncio.LimitOverrunError:
            raise ConnectionError("the engine's answer has oversized headers") from None
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise ConnectionError(
                f"not an HTTP answer from the engine: {lines[0][:80]!r}"
            ) from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return status, headers

    async def _exchange(
        self, method: str, path: str, headers: dict[str, str], body: Any
    ) -> tuple[_Connection, int, dict[str, str]]:
        replayable = body is None or isinstance(body, bytes | bytearray | memoryview)
        while True:
            conn = await self._acquire()
            try:
                await self._send(conn, method, path, headers, body)
                status, got = await self._answer(conn)
                return conn, status, got
            except (ConnectionResetError, BrokenPipeError):
                conn.close()
                # A kept-alive connection the engine had closed: nothing was done; ask again
                # on a new one.
                if conn.reused and replayable:
                    continue
                raise
            except BaseException:
                conn.close()
                raise

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: bytes | AsyncIterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one call; the answer with its body unread. Raises DockerError for an error
        status (with the engine's message), OSError when the engine cannot be reached. The
        caller reads the body or calls `release()` (`call` does both)."""
        hdrs = dict(headers or {})
        body: Any = data
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        target = "/" + path.lstrip("/") + _query(params)
        conn, status, got = await self._exchange(method, target, hdrs, body)
        resp = Response(self, conn, status, got)
        if status >= 400:
            try:
                raw = await resp.read()
            finally:
                resp.release()
            raise DockerError(status, _error_message(raw))
        return resp

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """`request`, its body read as JSON (None when empty)."""
        resp = await self.request(method, path, **kwargs)
        try:
            return await resp.json()
        finally:
            resp.release()

    async def _hijack(self, path: str, body: Any) -> _Connection:
        conn = await self._connect()
        try:
            headers = {
                "Content-Type": "application/json",
                "Connection": "Upgrade",
                "Upgrade": "tcp",
            }
            data = json.dumps(body).encode() if body is not None else None
            await self._send(conn, "POST", path, headers, data)
            status, got = await self._answer(conn)
            if status >= 400:
                resp = Response(self, conn, status, got)
                raw = await resp.read()
                raise DockerError(status, _error_message(raw))
            if status not in (101, 200):
                raise DockerError(status, f"the engine did not attach ({status})")
            return conn
        except BaseException:
            conn.close()
            raise

    async def version(self) -> dict[str, Any]:
        return await self.call("GET", "version")


def _error_message(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    try:
        found = json.loads(text)
    except ValueError:
        return text[:2000] or "(no message)"
    if isinstance(found, dict) and found.get("message"):
        return str(found["message"])
    return text[:2000]


# -- containers --------------------------------------------------------------------------------


class Exec:
    """One exec of a container."""

    def __init__(self, client: EngineClient, exec_id: str) -> None:
        self._client = client
        self.id = exec_id

    def attach(self, tty: bool = False) -> Stream:
        """Start it with its streams attached (enter the returned Stream to start it)."""
        return Stream(self._client, f"/exec/{self.id}/start", {"Detach": False, "Tty": tty}, tty)

    async def start_detached(self) -> None:
        resp = await self._client.request(
            "POST", f"exec/{self.id}/start", json_body={"Detach": True, "Tty": False}
        )
        await resp.read()  # not parsed: engines differ in what they answer here
        resp.release()

    async def inspect(self) -> dict[str, Any]:
        return await self._client.call("GET", f"exec/{self.id}/json")


class Container:
    """One container: `id`, and `data` (what a listing said of it, else {})."""

    def __init__(self, client: EngineClient, container_id: str, data: Mapping | None = None):
        self._client = client
        self.id = container_id
        self.data: dict[str, Any] = dict(data or {})

    async def start(self) -> None:
        await self._client.call("POST", f"containers/{self.id}/start")

    async def show(self) -> dict[str, Any]:
        return await self._client.call("GET", f"containers/{self.id}/json")

    async def delete(self, *, force: bool = False, v: bool = False) -> None:
        await self._client.call("DELETE", f"containers/{self.id}", params={"force": force, "v": v})

    async def kill(self, signal: str = "SIGKILL") -> None:
        await self._client.call("POST", f"containers/{self.id}/kill", params={"signal": signal})

    async def wait(self) -> dict[str, Any]:
        return await self._client.call("POST", f"containers/{self.id}/wait")

    async def exec(
        self,
        cmd: Sequence[str],
        *,
        stdout: bool = True,
        stderr: bool = True,
        stdin: bool = False,
        user: str = "",
        environment: Mapping[str, str] | None = None,
        workdir: str | None = None,
        tty: bool = False,
    ) -> Exec:
        config: dict[str, Any] = {
            "Cmd": list(cmd),
            "AttachStdin": stdin,
            "AttachStdout": stdout,
            "AttachStderr": stderr,
            "Tty": tty,
            "User": user or "",
            "Env": [f"{k}={v}" for k, v in (environment or {}).items()],
        }
        if workdir:
            config["WorkingDir"] = workdir
        found = await self._client.call("POST", f"containers/{self.id}/exec", json_body=config)
        return Exec(self._client, found["Id"])

    def attach(self) -> Stream:
        """Its stdin/stdout/stderr (created with OpenStdin, no tty), from now on."""
        params = {"stream": 1, "stdin": 1, "stdout": 1, "stderr": 1, "logs": 0, "detachKeys": ""}
        return Stream(self._client, f"/containers/{self.id}/attach{_query(params)}", None)

    async def put_archive(self, path: str, data: bytes) -> None:
        await self._client.call(
            "PUT",
            f"containers/{self.id}/archive",
            params={"path": path},
            data=data,
            headers={"Content-Type": "application/x-tar"},
        )

    async def get_archive(self, path: str) -> Response:
        """The tar of `path` as a Response to read in chunks (release it after)."""
        return await self._client.request(
            "GET", f"containers/{self.id}/archive", params={"path": path}
        )

    async def changes(self) -> list[dict[str, Any]]:
        return list(await self._client.call("GET", f"containers/{self.id}/changes") or [])

    async def log(self, *, stdout: bool = True, stderr: bool = True) -> str:
        """What the container wrote so far (no tty: frames decoded), as text."""
        resp = await self._client.request(
            "GET", f"containers/{self.id}/logs", params={"stdout": stdout, "stderr": stderr}
        )
        raw = await resp.read()
        resp.release()
        out, i = [], 0
        while i + 8 <= len(raw) and raw[i] in (0, 1, 2) and raw[i + 1 : i + 4] == b"\0\0\0":
            size = struct.unpack(">I", raw[i + 4 : i + 8])[0]
            out.append(raw[i + 8 : i + 8 + size])
            i += 8 + size
        if i < len(raw):  # a tty container's log is not framed
            out.append(raw[i:])
        return b"".join(out).decode("utf-8", "replace")

    async def commit(
        self,
        *,
        repository: str,
        tag: str,
        changes: Sequence[str] = (),
        pause: bool = True,
        config: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        params = {"container": self.id, "repo": repository, "tag": tag, "pause": pause}
        if changes:
            params["changes"] = "\n".join(changes)
        return await self._client.call(
            "POST", "commit", params=params, json_body=dict(config) if config is not None else {}
        )


class Containers:
    def __init__(self, client: EngineClient) -> None:
        self._client = client

    async def create(self, config: Mapping[str, Any], *, name: str | None = None) -> Container:
        found = await self._client.call(
            "POST", "containers/create", params={"name": name}, json_body=dict(config)
        )
        return Container(self._client, found["Id"])

    async def list(
        self, *, all: bool = False, filters: Mapping[str, Any] | None = None
    ) -> list[Container]:
        found = await self._client.call(
            "GET", "containers/json", params={"all": all, "filters": dict(filters or {}) or None}
        )
        return [Container(self._client, c["Id"], c) for c in found or []]

    def container(self, container_id: str) -> Container:
        return Container(self._client, container_id)


# -- images and networks ------------------------------------------------------------------------


def _stream_error(obj: Any) -> str | None:
    if isinstance(obj, dict) and ("error" in obj or "errorDetail" in obj):
        detail = obj.get("errorDetail") or {}
        return str(
            (detail.get("message") if isinstance(detail, dict) else None) or obj.get("error")
        )
    return None


class Images:
    def __init__(self, client: EngineClient) -> None:
        self._client = client

    async def inspect(self, ref: str) -> dict[str, Any]:
        return await self._client.call("GET", f"images/{ref}/json")

    async def list(self, *, filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return list(
            await self._client.call(
                "GET", "images/json", params={"filters": dict(filters or {}) or None}
            )
            or []
        )

    async def delete(self, ref: str, *, force: bool = False) -> None:
        await self._client.call("DELETE", f"images/{ref}", params={"force": force})

    async def tag(self, ref: str, repo: str, *, tag: str) -> None:
        await self._client.call("POST", f"images/{ref}/tag", params={"repo": repo, "tag": tag})

    async def pull(self, ref: str) -> None:
        """`docker pull ref` (":latest" when it names no tag); DockerError when the engine's
        progress stream reports a failure."""
        last = ref.rsplit("/", 1)[-1]
        params = {"fromImage": ref}
        if "@" not in ref and ":" not in last:
            params["tag"] = "latest"
        resp = await self._client.request("POST", "images/create", params=params)
        try:
            async for obj in resp.json_stream():
                if (err := _stream_error(obj)) is not None:
                    raise DockerError(500, err)
        finally:
            resp.release()

    async def build(
        self,
        context_tar: bytes,
        *,
        tag: str,
        labels: Mapping[str, str] | None = None,
        nocache: bool = False,
    ) -> AsyncIterator[dict[str, Any]]:
        """Build an image from a tar'd context (Dockerfile at its top); the engine's progress
        objects as they come (one carrying "error"/"errorDetail" says the build failed)."""
        params = {
            "t": tag,
            "rm": True,
            "forcerm": True,
            "nocache": nocache,
            "labels": dict(labels or {}),
        }
        resp = await self._client.request(
            "POST",
            "build",
            params=params,
            data=context_tar,
            headers={"Content-Type": "application/x-tar"},
        )
        try:
            async for obj in resp.json_stream():
                yield obj
        finally:
            resp.release()

    async def export(self, ref: str) -> Response:
        """`docker save` of one image: a Response to read in chunks (release it after)."""
        return await self._client.request("GET", f"images/{quote(ref, safe='/:@')}/get")


class Network:
    def __init__(self, client: EngineClient, network_id: str) -> None:
        self._client = client
        self.id = network_id

    async def show(self) -> dict[str, Any]:
        return await self._client.call("GET", f"networks/{self.id}")

    async def delete(self) -> None:
        await self._client.call("DELETE", f"networks/{self.id}")


class Networks:
    def __init__(self, client: EngineClient) -> None:
        self._client = client

    async def create(self, config: Mapping[str, Any]) -> Network:
        found = await self._client.call("POST", "networks/create", json_body=dict(config))
        return Network(self._client, found["Id"])

    async def get(self, network_id: str) -> Network:
        return Network(self._client, network_id)

    async def list(self, *, filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return list(
            await self._client.call(
                "GET", "networks", params={"filters": dict(filters or {}) or None}
            )
            or []
        )
