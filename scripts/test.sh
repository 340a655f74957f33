#!/usr/bin/env bash
# The README's test command: set up (if needed), then run the whole test suite against the real
# Docker engine (after a lint check). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
python -m ruff check src tests benchmarks
exec python -m pytest "$@"
