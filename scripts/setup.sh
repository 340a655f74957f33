#!/usr/bin/env bash
# One-time (idempotent) set-up for ttgen on a fresh machine, sourced by scripts/demo.sh and
# scripts/test.sh:
#   1. a virtual environment in .venv with ttgen and its test dependencies;
#   2. a running Docker engine (on Debian as root: installs docker.io and starts dockerd), and
#      Podman's Docker-compatible API service, the second sandbox backend (installs podman,
#      catatonit and slirp4netns, starts `podman system service` on /run/podman/podman.sock);
#   3. the local base image ttgen/base:bookworm (built with debootstrap when missing), in both
#      engines' stores (Podman's gets a copy of Docker's).
# Every step is skipped when already done. Set TTGEN_SKIP_BASE_IMAGE=1 to skip step 3 and
# TTGEN_SKIP_PODMAN=1 to leave Podman out (its tests then fail: scripts/test.sh runs them).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TTGEN_VENV:-$ROOT/.venv}"
BASE_IMAGE="${TTGEN_BASE_IMAGE:-ttgen/base:bookworm}"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }
apt_updated=0
apt_install() {
  command -v apt-get >/dev/null || die "cannot install $* (no apt-get): install it with your package manager"
  is_root || die "installing $* needs root (run as root, or install it yourself)"
  if [ $apt_updated = 0 ]; then apt-get update -qq >&2; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# 1. Python environment -----------------------------------------------------------------------
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || die "python3 (>= 3.11) is required"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python >= 3.11 is required ($("$PY" --version))"
stamp="$VENV/.ttgen-installed"
want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating $VENV and installing ttgen[dev,train]"
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    apt_install python3-venv
    "$PY" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  # The training extra needs torch. Without a GPU, take the CPU build when pip can (PyPI's default
  # Linux wheel is a CUDA build of several GB); TTGEN_TORCH overrides the requirement.
  if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    if [ -n "${TTGEN_TORCH:-}" ]; then
      "$VENV/bin/python" -m pip install -q "$TTGEN_TORCH" >&2
    elif ! command -v nvidia-smi >/dev/null; then
      "$VENV/bin/python" -m pip install -q "torch==2.13.0" >&2 \
        || "$VENV/bin/python" -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu >&2
    fi
  fi
  "$VENV/bin/python" -m pip install -q -e "$ROOT[dev,train]" >&2
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
# An editable install writes no bytecode, and where PYTHONDONTWRITEBYTECODE is set (as on our
# machines) every ttgen command would compile its modules again (~70 ms): write it now, as pip
# does for an installed package (only what changed since the last run).
"$VENV/bin/python" -m compileall -q "$ROOT/src" >/dev/null

# 2. Docker engine ----------------------------------------------------------------------------
engine_up() {
  "$VENV/bin/python" - <<'PY'
import os, socket, sys
host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
if not host.startswith("unix://"):
    sys.exit(0)  # a remote engine: let ttgen report on it
try:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(3)
    s.connect(host[len("unix://"):])
    s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
    sys.exit(0 if b"OK" in s.recv(1024) else 1)
except OSError:
    sys.exit(1)
PY
}
if ! engine_up; then
  if ! command -v dockerd >/dev/null; then
    say "no Docker engine: installing docker.io"
    apt_install docker.io
  fi
  is_root || die "the Docker engine is not running; start it (e.g. sudo systemctl start docker)"
  say "starting dockerd (log: /var/log/ttgen-dockerd.log)"
  # its own session: a job control kill of the caller's process group does not take the engine down
  if command -v setsid >/dev/null; then
    setsid nohup dockerd >/var/log/ttgen-dockerd.log 2>&1 </dev/null &
  else
    nohup dockerd >/var/log/ttgen-dockerd.log 2>&1 </dev/null &
  fi
  for _ in $(seq 60); do engine_up && break; sleep 1; done
  engine_up || { tail -20 /var/log/ttgen-dockerd.log >&2; die "dockerd did not come up"; }
fi

# 2b. Podman's API service ----------------------------------------------------------------------
# Rootful, on the socket PodmanBackend uses by default. With systemd, the packaged podman.socket
# serves it; without (containers, CI VMs), `podman system service` runs in its own session with a
# configuration of its own (TTGEN_PODMAN_CONF): cgroupfs and file events (no systemd), and the
# containers' rlimits set to the service's own (as Docker's containers inherit dockerd's: where
# root may not raise a hard limit, Podman's higher defaults make every container start fail).
PODMAN_SOCK="${TTGEN_PODMAN_SOCKET:-/run/podman/podman.sock}"
PODMAN_CONF="${TTGEN_PODMAN_CONF:-/var/lib/ttgen/podman/containers.conf}"
PODMAN_LOG="${TTGEN_PODMAN_LOG:-/var/log/ttgen-podman.log}"
podman_up() { DOCKER_HOST="unix://$PODMAN_SOCK" engine_up; }
podman_pid() {
  local p
  for p in $(pgrep -x podman 2>/dev/null); do
    if tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q "system service .*unix://$PODMAN_SOCK"; then
      echo "$p"; return 0
    fi
  done
  return 1
}
start_podman_service() {  # $1: extra containers.conf lines for [containers]
  mkdir -p "$(dirname "$PODMAN_CONF")" "$(dirname "$PODMAN_SOCK")"
  { echo "[containers]"; printf '%s\n' "$1"
    echo "[engine]"; echo 'cgroup_manager = "cgroupfs"'; echo 'events_logger = "file"'; } > "$PODMAN_CONF"
  # its own session: a job control kill of the caller's process group does not take it down
  CONTAINERS_CONF="$PODMAN_CONF" setsid nohup podman system service --time=0 "unix://$PODMAN_SOCK" \
    >>"$PODMAN_LOG" 2>&1 </dev/null &
  for _ in $(seq 30); do podman_up && return 0; sleep 0.5; done
  tail -20 "$PODMAN_LOG" >&2; die "podman system service did not come up (log: $PODMAN_LOG)"
}
if [ "${TTGEN_SKIP_PODMAN:-0}" != 1 ] && ! podman_up; then
  t_podman=$SECONDS
  if ! command -v podman >/dev/null || ! command -v slirp4netns >/dev/null \
     || [ ! -x /usr/libexec/podman/catatonit ]; then
    say "installing podman (the second sandbox backend)"
    apt_install podman catatonit slirp4netns
  fi
  is_root || die "Podman's API service is not running; start it: podman system service --time=0 unix://$PODMAN_SOCK &"
  if [ -d /run/systemd/system ] && systemctl start podman.socket 2>/dev/null && [ "$PODMAN_SOCK" = /run/podman/podman.sock ]; then
    say "started podman.socket (systemd)"
  else
    say "starting podman system service on $PODMAN_SOCK (log: $PODMAN_LOG)"
    start_podman_service ""
    pid="$(podman_pid)" || die "podman system service is not running"
    nofile="$(awk '/^Max open files/ {print $5}' "/proc/$pid/limits")"
    nproc="$(awk '/^Max processes/ {print $4}' "/proc/$pid/limits")"
    kill "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    start_podman_service "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"
  fi
  say "podman ready in $((SECONDS - t_podman)) s"
fi

# The tests drive `ttgen env shell` in a real terminal.
if ! command -v tmux >/dev/null; then
  if is_root && command -v apt-get >/dev/null; then apt_install tmux; else say "warning: no tmux; tests/test_env_shell.py will fail"; fi
fi

# 3. Base image -------------------------------------------------------------------------------
if [ "${TTGEN_SKIP_BASE_IMAGE:-0}" != 1 ]; then
  if ! "$VENV/bin/python" - "$BASE_IMAGE" <<'PY'
import asyncio, sys
from ttgen.sandbox.engine_client import DockerError, EngineClient
async def main():
    async with EngineClient() as d:
        try:
            await d.images.inspect(sys.argv[1])
        except DockerError:
            sys.exit(1)
asyncio.run(main())
PY
  then
    command -v debootstrap >/dev/null || apt_install debootstrap
    say "building the base image $BASE_IMAGE with debootstrap (about a minute)"
    ttgen images bootstrap --tag "$BASE_IMAGE"
  fi
fi

# The base image in Podman's own store: a copy of Docker's (docker save → Podman's images/load,
# about 10 s), or, on a host without Docker, debootstrapped straight into Podman.
if [ "${TTGEN_SKIP_BASE_IMAGE:-0}" != 1 ] && [ "${TTGEN_SKIP_PODMAN:-0}" != 1 ] && podman_up; then
  "$VENV/bin/python" - "$BASE_IMAGE" <<'PY'
import asyncio, sys
from ttgen.sandbox import open_backend
from ttgen.settings import Settings

async def main(tag: str) -> None:
    async with open_backend("podman", Settings(pull=False)) as podman:
        if await podman.image_exists(tag) is not None:
            return
        async with open_backend("docker", Settings(pull=False), check=False) as docker:
            try:
                have = await docker.image_exists(tag) is not None
            except Exception:
                have = False
            if have:
                print(f"[setup] copying {tag} from Docker into Podman", file=sys.stderr)
                await podman.load_image_from(docker, tag)
                return
        from ttgen.sandbox.bootstrap import bootstrap_base_image
        print(f"[setup] building {tag} in Podman with debootstrap", file=sys.stderr)
        await bootstrap_base_image(podman, tag=tag)

asyncio.run(main(sys.argv[1]))
PY
fi
