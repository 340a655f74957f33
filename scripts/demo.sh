#!/usr/bin/env bash
# The README's main command: set up (if needed), then run ttgen on the bundled examples:
# check every example task; validate it (oracle must score 1, nop 0), keeping the valid ones;
# roll out the oracle agent on the kept tasks (2 attempts each); turn the bundled math, code and
# SWE prompts into tasks with the dataset adapters and validate those too (the general domain
# image is built on first use); print the summaries.
# Outputs go to runs/demo/ (re-running resumes: finished work is kept).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
OUT="${TTGEN_DEMO_OUT:-runs/demo}"
ttgen tasks check examples/tasks --verbose
ttgen validate examples/tasks --out "$OUT/validation" -n 4 --keep valid --keep-dir "$OUT/tasks" "$@"
ttgen rollout "$OUT/tasks" --agent oracle -k 2 -n 4 --out "$OUT/oracle" "$@"
for kind in math code swe; do
  ttgen adapt "$kind" --input "examples/adapters/$kind.jsonl" --out "$OUT/adapted/$kind"
done
ttgen validate "$OUT/adapted" --out "$OUT/adapted-validation" -n 4 "$@"
