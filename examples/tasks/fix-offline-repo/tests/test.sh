#!/bin/bash
mkdir -p /logs/verifier
cd /app/calc || { echo 0 > /logs/verifier/reward.txt; exit 0; }
fail() { echo "FAIL: $1"; echo 0 > /logs/verifier/reward.txt; exit 0; }
[ "$(python3 calc.py mul 6 7)" = "42" ] || fail "mul 6 7 != 42"
[ "$(python3 calc.py add 6 7)" = "13" ] || fail "add changed"
[ "$(python3 calc.py sub 6 7)" = "-1" ] || fail "sub changed"
git diff --quiet HEAD || fail "uncommitted changes"
[ "$(git rev-parse --abbrev-ref HEAD)" = "main" ] || fail "not on main"
git log -1 --format=%s | grep -q '^fix:' || fail "last commit message does not start with fix:"
echo "all checks passed"
echo 1 > /logs/verifier/reward.txt
