#!/bin/bash
# A correct solution of sensor_rollup.xml (the tests use it as the task's oracle).
mkdir -p /app/output
python3 - <<'PY'
import csv, json
from collections import defaultdict
from datetime import datetime, timezone
installed = set(json.load(open("/app/data/sensors.json"))["installed"])
groups, broken, unknown = defaultdict(list), 0, set()
for row in csv.DictReader(open("/app/data/readings.csv", newline="")):
    sid = (row["sensor_id"] or "").strip()
    try:
        value = float(row["celsius"])
        ts = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00"))
    except (TypeError, ValueError):
        broken += 1
        continue
    if not sid:
        broken += 1
        continue
    if sid not in installed:
        unknown.add(sid)
        continue
    hour = ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:00Z")
    groups[(sid, hour)].append(value)
with open("/app/output/hourly.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["sensor_id", "hour_utc", "count", "mean_celsius"])
    for (sid, hour), vals in sorted(groups.items()):
        w.writerow([sid, hour, len(vals), round(sum(vals) / len(vals), 2)])
json.dump({"broken_rows": broken, "unknown_sensors": sorted(unknown)}, open("/app/output/rejected.json", "w"))
PY
