#!/bin/bash
python3 - <<'PY'
import csv, json
totals = {}
with open("/app/sales.csv") as f:
    for row in csv.DictReader(f):
        totals[row["region"]] = totals.get(row["region"], 0) + int(row["units"]) * float(row["price"])
with open("/app/report.json", "w") as f:
    json.dump({k: round(totals[k], 2) for k in sorted(totals)}, f, indent=2)
PY
