#!/usr/bin/env bash
# The README's main command: set up (if needed), then run the whole pipeline offline on the bundled
# examples (examples/quickstart.yaml): adapt the bundled math/code/SWE prompts, take the example
# tasks, validate everything (oracle must score 1, nop 0), roll out the oracle agent as a stand-in
# for a teacher (labelled as such in the data), curate (decontaminate against a demo benchmark,
# filter, dedup), export Terminal-Corpus and SFT rows, and write the report.
# Outputs go to runs/quickstart/ (re-running skips the stages already done). Extra arguments go to
# `ttgen run`, e.g. --model M --base-url URL for a real teacher and synthesis.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
ttgen tasks check examples/tasks
ttgen run examples/quickstart.yaml "$@"
