#!/bin/bash
set -e
cd /app/calc
python3 - <<'PY'
from pathlib import Path
p = Path("calc.py")
lines = p.read_text().splitlines(keepends=True)
for i, line in enumerate(lines):
    if 'op == "mul"' in line:
        lines[i + 1] = lines[i + 1].replace("a + b", "a * b")
p.write_text("".join(lines))
PY
git commit -q -am "fix: multiply instead of adding in mul"
