#!/usr/bin/env bash
# The README's main command: set up (if needed), then run ttgen on the bundled example tasks:
# check every task, build each environment image, run a command in it, print a summary.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
ttgen tasks check examples/tasks --verbose
ttgen env smoke examples/tasks "$@"
