#!/usr/bin/env bash
# The README's test command: set up (if needed), then run the whole test suite against the real
# Docker engine, and Podman's for the tests that run on both sandbox backends (setup.sh starts its
# service; those tests fail, never skip, without it), after a lint check. Extra arguments go to
# pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
python -m ruff check src tests benchmarks
# tests/test_report.py opens the HTML report in headless Chromium (Debian's `chromium` package).
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if is_root && command -v apt-get >/dev/null; then apt_install chromium; else say "warning: no chromium; tests/test_report.py will fail"; fi
fi
# tests/test_ray_two_engines.py gives a second dockerd its own bridge with `ip` (iproute2).
if ! command -v ip >/dev/null; then
  if is_root && command -v apt-get >/dev/null; then apt_install iproute2; else say "warning: no ip; tests/test_ray_two_engines.py will fail"; fi
fi
exec python -X faulthandler -m pytest "$@"
