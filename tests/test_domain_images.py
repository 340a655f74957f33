"""The pre-built domain images (ttgen/domain:<id>): they build, their tools work, builds are
cached by content, and tasks that start FROM a missing one get it built."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import BASE_IMAGE
from ttgen.cli import app
from ttgen.errors import ConfigError, ImageBuildError
from ttgen.sandbox import open_backend
from ttgen.sandbox.domains import (
    DOMAIN_IMAGES,
    LABEL_CONTENT,
    build_domain_image,
    dockerfile_text,
    domain_content,
    domain_image_state,
    domain_of_image,
    domain_packages,
    image_ref,
    parse_domain_list,
)
from ttgen.sandbox.engine_client import DockerError, EngineClient
from ttgen.settings import Settings, load_settings
from ttgen.task import Task

# What must work in each image (run with bash -e in /app). The first line of every image's
# checks is the common set.
COMMON_CHECK = """
test "$(pwd)" = /app
pytest --version; jq --version; tmux -V; git --version; curl --version >/dev/null; unzip -v >/dev/null
python3 -m venv /tmp/venv && /tmp/venv/bin/python -c 'print("venv ok")'
test "$PIP_BREAK_SYSTEM_PACKAGES" = 1
"""
CHECKS: dict[str, str] = {
    "general": """
test "$(echo '6*7' | bc)" = 42
echo 'a 1' | gawk '{print $2}'
test "$(sqlite3 :memory: 'select 40+2')" = 42
python3 -c 'import requests, yaml'
""",
    "data_processing": """
echo '<a><b>x</b></a>' > d.xml && xmllint --xpath 'string(/a/b)' d.xml | grep -qx x
xsltproc --version >/dev/null
printf 'k,v\\n1,2\\n' > d.csv && csvcut -c v d.csv | tail -1 | grep -qx 2
python3 -c '
import pandas as pd, pyarrow, lxml.etree, openpyxl, jsonschema, yaml
df = pd.read_csv("d.csv")
df.to_parquet("d.parquet"); df.to_excel("d.xlsx")
assert pd.read_parquet("d.parquet").v.tolist() == [2]
'
""",
    "data_querying": """
test "$(sqlite3 :memory: 'select 40+2')" = 42
python3 -c '
import duckdb, sqlalchemy, networkx, pandas, rdflib
assert duckdb.sql("select 40 + 2").fetchall() == [(42,)]
e = sqlalchemy.create_engine("sqlite://")
with e.connect() as c:
    assert c.execute(sqlalchemy.text("select 1")).scalar() == 1
assert networkx.shortest_path(networkx.path_graph(4), 0, 3) == [0, 1, 2, 3]
'
""",
    "data_science": """
MPLBACKEND=Agg python3 -c '
import numpy as np, pandas, scipy.stats, statsmodels.api, matplotlib.pyplot as plt, seaborn
from sklearn.linear_model import LinearRegression
x = np.arange(10).reshape(-1, 1)
assert abs(LinearRegression().fit(x, 3 * x.ravel() + 1).coef_[0] - 3) < 1e-9
plt.plot([1, 2]); plt.savefig("p.png")
'
""",
    "debugging": """
printf '#include <stdio.h>\\nint main(void){puts("hi");return 0;}\\n' > h.c
gcc -g -o h h.c && make --version >/dev/null
gdb -batch -ex run ./h | grep -q hi
strace -f -o /dev/null ./h; ltrace -V >/dev/null
valgrind -q --error-exitcode=9 ./h
""",
    "dependency_management": """
node -e 'console.log(6*7)' | grep -qx 42; npm --version
pip-compile --version; pipdeptree --version; virtualenv --version
gcc --version >/dev/null && python3-config --includes
""",
    "file_operations": """
mkdir -p src && echo data > src/f && tar -cf a.tar src
zstd -q a.tar && lz4 -q a.tar && 7z a -bd a.7z src >/dev/null && 7z l a.7z | grep -q src/f
rsync -a src/ dst/ && test -f dst/f
echo src/f | cpio -o --quiet > a.cpio
setfacl -m u:root:r src/f 2>/dev/null || true; getfacl --version >/dev/null; getfattr --version
python3 -c 'import magic; assert "text" in magic.from_buffer(b"hello world\\n").lower()'
""",
    "scientific_computing": """
MPLBACKEND=Agg python3 -c '
import numpy, scipy.integrate, sympy, pandas, matplotlib.pyplot, networkx
x = sympy.symbols("x")
assert sympy.integrate(2 * x, (x, 0, 3)) == 9
assert abs(scipy.integrate.quad(lambda t: 2 * t, 0, 3)[0] - 9) < 1e-9
'
""",
    "security": """
openssl version; openssl req -x509 -newkey rsa:2048 -nodes -keyout k.pem -out c.pem -subj /CN=t -days 1 2>/dev/null
nmap --version; command -v nc; gpg --version >/dev/null; tcpdump --version
python3 -c '
import cryptography, Crypto.Cipher.AES, jwt, paramiko, flask, requests
from scapy.all import IP
assert jwt.decode(jwt.encode({"a": 1}, "k", algorithm="HS256"), "k", algorithms=["HS256"]) == {"a": 1}
'
""",
    "software_engineering": """
gcc --version >/dev/null; make --version >/dev/null; cmake --version
node -e 'console.log(1)'; npm --version
mypy --version; ruff --version; black --version; flake8 --version; python3 -c 'import pytest_cov'
""",
    "system_administration": """
for t in cron logrotate nginx sshd sudo supervisord rsyslogd ip ping netstat nc lsof pstree; do
  command -v $t
done
nginx -t
""",
    "model_training": """
python3 -c '
import numpy as np, pandas, scipy, joblib, lightgbm, sklearn
x = np.random.default_rng(0).normal(size=(200, 3)); y = (x[:, 0] > 0).astype(int)
model = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(x, y)
assert (model.predict(x) == y).mean() > 0.9
'
""",
}
BUILD_TIMES: dict[str, tuple[str, float, float]] = {}


@pytest.fixture
def settings(ca_settings: Settings) -> Settings:
    return ca_settings


def prebuilt_task(make_task, image: str, name: str = "t") -> Task:
    return Task.load(
        make_task(name, dockerfile=None, toml=f'[environment]\ndocker_image = "{image}"\n')
    )


def test_the_packaged_dockerfiles_share_one_common_block():
    blocks = set()
    for d in DOMAIN_IMAGES:
        text = dockerfile_text(d)
        lines = text.splitlines()
        assert lines[0] == f"# ttgen domain image: {d}"
        assert "ARG BASE_IMAGE=ubuntu:24.04\nFROM ${BASE_IMAGE}\n" in text
        assert lines[-2:] == ["WORKDIR /app", f'LABEL ttgen.domain="{d}"']
        blocks.add(re.search(r"# ---- common:.*?\n(?=\n# ---- domain:)", text, re.S).group(0))
        assert domain_packages(d, "common")["pip"] == ["pytest"]
        assert set(CHECKS) == set(DOMAIN_IMAGES)
    assert len(blocks) == 1  # byte-identical, so the engine shares its layers
    assert "apt-get install" in blocks.pop()
    assert "pandas" in domain_packages("data_science")["pip"]
    assert "nmap" in domain_packages("security")["apt"]


def test_names_tags_and_base_replacement():
    assert DOMAIN_IMAGES[0] == "general" and len(DOMAIN_IMAGES) == 12
    assert image_ref("security") == "ttgen/domain:security"
    assert domain_of_image("ttgen/domain:data_science") == "data_science"
    for other in (
        "ttgen/domain:nope",
        "ttgen/env:data_science",
        "ubuntu:24.04",
        "x/ttgen/domain:general",
    ):
        assert domain_of_image(other) is None
    text = dockerfile_text("general", base="debian:bookworm")
    assert "ARG BASE_IMAGE=debian:bookworm\n" in text and "ubuntu:24.04" not in text
    assert text.replace("debian:bookworm", "ubuntu:24.04") == dockerfile_text("general")
    assert parse_domain_list(["security,general", "security"]) == ["general", "security"]
    assert parse_domain_list(["all"]) == list(DOMAIN_IMAGES)
    with pytest.raises(ConfigError, match=r"unknown domain image 'nope'.*general, data_processing"):
        parse_domain_list(["general,nope"])
    with pytest.raises(ConfigError, match="data_science"):
        image_ref("datascience")
    with pytest.raises(ConfigError):
        dockerfile_text("general", base="two words")


def test_domain_base_setting_from_file_and_env(tmp_path: Path):
    (tmp_path / "ttgen.toml").write_text('[images]\ndomain_base = "debian:bookworm"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path / "none")}
    assert load_settings(tmp_path, env).domain_base == "debian:bookworm"
    env["TTGEN_DOMAIN_BASE"] = "ubuntu:22.04"
    assert load_settings(tmp_path, env).domain_base == "ubuntu:22.04"
    assert load_settings(tmp_path / "none", {"XDG_CONFIG_HOME": str(tmp_path)}).domain_base is None


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("domain", DOMAIN_IMAGES)
async def test_domain_image_builds_and_its_tools_work(backend, make_task, job_name, domain):
    t0 = time.monotonic()
    ref = await build_domain_image(backend, domain)
    info = await backend.image_exists(ref.tag)
    assert info is not None and ref.tag == f"ttgen/domain:{domain}"
    BUILD_TIMES[domain] = (ref.source, time.monotonic() - t0, info["Size"] / 1e6)
    print(f"\n{domain}: {ref.source} in {time.monotonic() - t0:.1f} s, {info['Size'] / 1e6:.0f} MB")
    labels = info["Config"]["Labels"]
    assert labels["ttgen.domain"] == domain and LABEL_CONTENT in labels
    assert await domain_image_state(backend, domain) == "built"
    async with await backend.start(prebuilt_task(make_task, ref.tag), job=job_name) as sb:
        assert sb.workdir == "/app"
        res = await sb.exec(["bash", "-ec", COMMON_CHECK + CHECKS[domain]], timeout=300)
    assert res.exit_code == 0, f"{domain}: checks failed\n{res.stdout}\n{res.stderr}"


async def test_a_second_build_is_a_cache_hit(backend, settings):
    first = await build_domain_image(backend, "general")
    async with open_backend(None, settings) as other:  # as a new process would
        t0 = time.monotonic()
        again = await build_domain_image(other, "general")
        assert time.monotonic() - t0 < 5
        assert again.source == "cached" and again.tag == first.tag and other.builds == 0
        # Concurrent requests wait on one lock and all find it cached.
        refs = await asyncio.gather(*(build_domain_image(other, "general") for _ in range(3)))
        assert {r.source for r in refs} == {"cached"} and other.builds == 0


async def test_the_base_is_part_of_the_content(backend, settings):
    _, default = await domain_content(backend, "general")
    _, explicit = await domain_content(backend, "general", base="debian:bookworm")
    assert explicit != default  # another FROM, even one aliased to the same image
    settings.domain_base = "debian:bookworm"
    _, from_settings = await domain_content(backend, "general")
    assert from_settings == explicit
    _, arg_wins = await domain_content(backend, "general", base="ubuntu:24.04")
    assert arg_wins == default
    missing = f"ttgen/no-such-base:{uuid.uuid4().hex[:8]}"
    with pytest.raises(ImageBuildError, match=r"no-such-base.*not present locally"):
        await build_domain_image(backend, "general", base=missing)


async def test_unknown_domain_errors_clearly(backend):
    with pytest.raises(
        ConfigError, match=r"unknown domain image 'nope'; the domains are: general,"
    ):
        await build_domain_image(backend, "nope")


async def _untag(ref: str) -> None:
    async with EngineClient() as d:
        try:
            await d.images.delete(ref)
        except DockerError as exc:
            assert exc.status == 404, exc


@pytest.mark.timeout(900)
async def test_tasks_from_a_missing_domain_image_build_it_once(backend, make_task):
    await build_domain_image(backend, "general")  # warm the engine's layer cache
    await _untag(image_ref("general"))
    builds = backend.builds
    nonce = uuid.uuid4().hex
    tasks = [
        Task.load(
            make_task(
                f"t{i}",
                dockerfile=f"FROM ttgen/domain:general\nRUN echo {i} > /n\nLABEL n={nonce}\n",
            )
        )
        for i in range(3)
    ]
    refs = await asyncio.gather(*(backend.ensure_image(t) for t in tasks))
    assert [r.source for r in refs] == ["built"] * 3
    assert backend.builds - builds == 4  # the domain image once, then each task
    assert await domain_image_state(backend, "general") == "built"
    # The task's tag was computed with the domain image present: the next request is a hit.
    assert (await backend.ensure_image(tasks[0])).tag == refs[0].tag
    assert (await backend.ensure_image(tasks[0])).source == "cached"

    # A task that names the domain image as its docker_image gets it built too.
    await _untag(image_ref("general"))
    task = prebuilt_task(make_task, "ttgen/domain:general", "prebuilt")
    ref = await backend.ensure_image(task)
    assert ref.source == "prebuilt" and await backend.image_exists("ttgen/domain:general")
    async with await backend.start(task, job="ignored") as sb:
        assert (await sb.exec("echo '6*7' | bc")).stdout.strip() == "42"

    # An unknown domain is an ordinary missing base image, with the usual message.
    bad = Task.load(make_task("bad", dockerfile="FROM ttgen/domain:nope\n"))
    with pytest.raises(ImageBuildError, match=r"ttgen/domain:nope.*cannot be pulled"):
        await backend.ensure_image(bad)


# -- command line ------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path, monkeypatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    for var in ("TTGEN_CONFIG", "TTGEN_IMAGE_ALIASES", "TTGEN_EXTRA_CA_CERT", "TTGEN_DOMAIN_BASE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / "ttgen.toml").write_text(
        f'[images]\naliases = ["ubuntu:*={BASE_IMAGE}"]\nextra_ca_cert = "host"\npull = false\n'
    )
    return CliRunner()


def test_cli_builds_lists_and_shows_domain_images(docker_ready, cli):
    env = {"COLUMNS": "400"}
    res = cli.invoke(app, ["images", "build", "--domain", "general"], env=env)
    assert res.exit_code == 0, res.output
    assert re.search(r"general\s.*ttgen/domain:general\s.*(built|cached)", res.output)

    res = cli.invoke(app, ["images", "domains", "--json"], env=env)
    assert res.exit_code == 0, res.output
    rows = {r["domain"]: r for r in json.loads(res.output)}
    assert list(rows) == list(DOMAIN_IMAGES)
    assert rows["general"]["state"] == "built" and rows["general"]["size_mb"] > 0
    assert "scikit-learn" in rows["data_science"]["packages"]["pip"]

    res = cli.invoke(app, ["images", "domains"], env=env)
    assert res.exit_code == 0 and "ttgen/domain:security" in res.output and "nmap" in res.output
    res = cli.invoke(app, ["images", "domains", "--dockerfile", "security"], env=env)
    assert res.output == dockerfile_text("security")

    res = cli.invoke(app, ["images", "build", "--domain", "general,nope"], env=env)
    assert res.exit_code == 2 and "unknown domain image 'nope'" in res.output
    res = cli.invoke(app, ["images", "build"], env=env)
    assert res.exit_code == 2 and "--domain" in res.output


def test_cli_reports_each_failed_domain_and_goes_on(docker_ready, cli):
    missing = f"ttgen/no-such-base:{uuid.uuid4().hex[:8]}"
    res = cli.invoke(
        app,
        ["images", "build", "-d", "security", "-d", "general", "--base", missing],
        env={"COLUMNS": "400"},
    )
    assert res.exit_code == 1, res.output
    # General first, then security; both tried, both reported.
    assert res.output.index("general failed") < res.output.index("security failed")
    assert res.output.count("not present locally") == 2
