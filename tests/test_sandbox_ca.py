"""The extra CA bundle: builds and containers trust it (pip, requests/urllib, curl).

Networks with intercepted TLS are simulated inside the container: an HTTPS server on the
container's loopback presents a certificate signed by a CA made in the test. Nothing leaves
the container.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import BASE_IMAGE, unique_dockerfile
from ttgen.sandbox import open_backend
from ttgen.sandbox.context import CA_CONTAINER_PATH
from ttgen.settings import ImageAlias, Settings
from ttgen.task import Task


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("ttgen test intercepting CA"))
        .issuer_name(_name("ttgen test intercepting CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    # A tiny PyPI-style index with one real wheel, for pip.
    site = d / "site"
    (site / "simple" / "ttgen-probe").mkdir(parents=True)
    (site / "files").mkdir()
    wheel = "ttgen_probe-1.0-py3-none-any.whl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ttgen_probe/__init__.py", "VALUE = 42\n")
        z.writestr(
            "ttgen_probe-1.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: ttgen-probe\nVersion: 1.0\n",
        )
        z.writestr(
            "ttgen_probe-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: ttgen-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        z.writestr("ttgen_probe-1.0.dist-info/RECORD", "")
    (site / "files" / wheel).write_bytes(buf.getvalue())
    (site / "simple" / "ttgen-probe" / "index.html").write_text(
        f'<html><body><a href="../../files/{wheel}">{wheel}</a></body></html>\n'
    )
    (site / "hello.txt").write_text("hello over tls\n")
    return {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key", "site": site}


SERVER = r"""
import http.server, ssl, functools, os
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="/srv/site")
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 8443), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/srv/pki/server.pem", "/srv/pki/server.key")
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
httpd.serve_forever()
"""


async def _serve_tls(sb, pki) -> None:
    await sb.upload_dir(pki["site"], "/srv/site")
    await sb.upload_file(pki["cert"], "/srv/pki/server.pem")
    await sb.upload_file(pki["key"], "/srv/pki/server.key")
    await sb.write_file("/srv/server.py", SERVER)
    await sb.exec("nohup python3 /srv/server.py >/srv/server.log 2>&1 &")
    wait = await sb.exec(
        "for i in $(seq 50); do curl -sk https://localhost:8443/hello.txt >/dev/null && exit 0; sleep 0.1; done; exit 1",
        timeout=30,
    )
    assert wait.ok, (await sb.exec("cat /srv/server.log")).stdout


async def _assert_trusts(sb, pki) -> None:
    bundle = await sb.read_file(CA_CONTAINER_PATH)
    assert pki["ca"].read_bytes().strip() in bundle
    await _serve_tls(sb, pki)
    curl = await sb.exec("curl -sS https://localhost:8443/hello.txt", timeout=30)
    assert curl.ok and curl.stdout == "hello over tls\n", curl.stderr
    py = await sb.exec(
        [
            "python3",
            "-c",
            "import urllib.request; print(urllib.request.urlopen('https://localhost:8443/hello.txt').read().decode(), end='')",
        ],
        timeout=30,
    )
    assert py.ok and py.stdout == "hello over tls\n", py.stderr
    pip = await sb.exec(
        "pip download --no-deps --disable-pip-version-check -d /tmp/dl --index-url https://localhost:8443/simple/ ttgen-probe==1.0",
        timeout=120,
    )
    assert pip.ok, pip.stdout + pip.stderr
    assert (await sb.exec("ls /tmp/dl")).stdout.strip() == "ttgen_probe-1.0-py3-none-any.whl"


def _settings(ca: Path | None) -> Settings:
    return Settings(aliases=[ImageAlias("ubuntu:*", BASE_IMAGE)], pull=False, extra_ca_cert=ca)


async def test_built_images_trust_the_extra_ca(docker_ready, make_task, pki, job_name):
    task = Task.load(make_task(dockerfile=unique_dockerfile()))
    async with open_backend(None, _settings(pki["ca"])) as b:
        ref = await b.ensure_image(task)
        assert ref.has_ca
        async with await b.start(task, job=job_name) as sb:
            env = (await sb.exec("env")).stdout
            for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE"):
                assert f"{var}={CA_CONTAINER_PATH}" in env
            await _assert_trusts(sb, pki)
        await b.gc(job=job_name)


async def test_the_ca_is_trusted_during_the_build(docker_ready, make_task, pki, job_name):
    # A RUN step checks the bundle the way pip or curl would see it at build time.
    check = f'RUN grep -q "$(sed -n 2p {CA_CONTAINER_PATH})" "$SSL_CERT_FILE" && test "$PIP_CERT" = {CA_CONTAINER_PATH}\n'
    task = Task.load(make_task(dockerfile=unique_dockerfile(check)))
    async with open_backend(None, _settings(pki["ca"])) as b:
        assert (await b.ensure_image(task)).source == "built"


async def test_prebuilt_images_get_the_ca_as_a_layer_built_once(
    docker_ready, make_task, pki, job_name
):
    """A prebuilt image runs with the CA bundle added as one layer, built once per image and
    bundle: no container needs it copied in at its start (an archive upload, ~55 ms of engine
    CPU each), the bundle is no change of the container's, and the task's image stays the one
    recorded."""
    task = Task.load(
        make_task(dockerfile=None, toml=f'[environment]\ndocker_image = "{BASE_IMAGE}"\n')
    )
    async with open_backend(None, _settings(pki["ca"])) as b:
        ref = await b.ensure_image(task)
        assert ref.tag == BASE_IMAGE and ref.source == "prebuilt" and ref.has_ca
        assert ref.runs_from is not None and ref.runs_from != BASE_IMAGE
        builds = b.builds
        again = await asyncio.gather(*(b.ensure_image(task) for _ in range(4)))
        assert {r.runs_from for r in again} == {ref.runs_from} and b.builds == builds
        async with await b.start(task, job=job_name, image=ref) as sb:
            await _assert_trusts(sb, pki)
            changed = {c["Path"] for c in await sb.changes()}
            assert CA_CONTAINER_PATH not in changed and "/etc/ttgen" not in changed
        await b.gc(job=job_name)
    other = pki["ca"].parent / "other-ca.pem"
    other.write_text(pki["ca"].read_text() + "# another bundle\n")
    async with open_backend(None, _settings(other)) as b:
        assert (await b.ensure_image(task)).runs_from not in (None, ref.runs_from)


async def test_without_the_ca_tls_to_the_intercepted_server_fails(
    docker_ready, make_task, pki, job_name
):
    task = Task.load(
        make_task(dockerfile=None, toml=f'[environment]\ndocker_image = "{BASE_IMAGE}"\n')
    )
    async with open_backend(None, _settings(None)) as b:
        async with await b.start(task, job=job_name) as sb:
            await _serve_tls(sb, pki)
            curl = await sb.exec("curl -sS https://localhost:8443/hello.txt", timeout=30)
            assert curl.exit_code == 60  # peer certificate cannot be authenticated
        await b.gc(job=job_name)


async def test_changing_the_ca_changes_the_image(docker_ready, make_task, pki, tmp_path):
    other = tmp_path / "other-ca.pem"
    other.write_text(pki["ca"].read_text() + "# a different bundle\n")
    task = Task.load(make_task(dockerfile=unique_dockerfile()))
    async with open_backend(None, _settings(pki["ca"])) as a, open_backend(None, _settings(other)) as b:
        assert (await a.ensure_image(task)).tag != (await b.ensure_image(task)).tag
