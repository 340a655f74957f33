#!/usr/bin/env bash
# One-time (idempotent) set-up for ttgen on a fresh machine, sourced by scripts/demo.sh and
# scripts/test.sh:
#   1. a virtual environment in .venv with ttgen and its test dependencies;
#   2. a running Docker engine (on Debian as root: installs docker.io and starts dockerd);
#   3. the local base image ttgen/base:bookworm (built with debootstrap when missing).
# Every step is skipped when already done. Set TTGEN_SKIP_BASE_IMAGE=1 to skip step 3.
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

# The tests drive `ttgen env shell` in a real terminal.
if ! command -v tmux >/dev/null; then
  if is_root && command -v apt-get >/dev/null; then apt_install tmux; else say "warning: no tmux; tests/test_env_shell.py will fail"; fi
fi

# 3. Base image -------------------------------------------------------------------------------
if [ "${TTGEN_SKIP_BASE_IMAGE:-0}" != 1 ]; then
  if ! "$VENV/bin/python" - "$BASE_IMAGE" <<'PY'
import asyncio, sys, aiodocker
async def main():
    async with aiodocker.Docker() as d:
        try:
            await d.images.inspect(sys.argv[1])
        except aiodocker.DockerError:
            sys.exit(1)
asyncio.run(main())
PY
  then
    command -v debootstrap >/dev/null || apt_install debootstrap
    say "building the base image $BASE_IMAGE with debootstrap (about a minute)"
    ttgen images bootstrap --tag "$BASE_IMAGE"
  fi
fi
