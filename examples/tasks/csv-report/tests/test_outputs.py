import json
from pathlib import Path

EXPECTED = {"east": 10.5, "north": 27.5, "south": 42.5}


def test_report_exists():
    assert Path("/app/report.json").is_file()


def test_report_totals():
    report = json.loads(Path("/app/report.json").read_text())
    assert report == EXPECTED


def test_regions_sorted():
    report = json.loads(Path("/app/report.json").read_text())
    assert list(report) == sorted(EXPECTED)
