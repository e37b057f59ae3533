"""The one JSON-safe rule (``autolrs.events.json_safe``): event files and benchmark results."""

from __future__ import annotations

import json
import math

import pytest

from autolrs.events import EventLog, json_restore, json_safe, read_events


def test_non_finite_floats_become_strings_and_come_back():
    value = {"a": math.nan, "b": [math.inf, -math.inf, 1.5, None], "c": (2, "x")}
    safe = json_safe(value)
    assert safe == {"a": "nan", "b": ["inf", "-inf", 1.5, None], "c": [2, "x"]}
    back = json_restore(json.loads(json.dumps(safe, allow_nan=False)))
    assert math.isnan(back["a"]) and back["b"][:3] == [math.inf, -math.inf, 1.5]
    assert back["b"][3] is None and back["c"] == [2, "x"]


def test_an_event_file_keeps_non_finite_values(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path, run="r")
    log.emit([{"event": "candidate", "step": 3, "forecast": math.inf, "losses": [math.nan, 1.0]}])
    log.close()
    assert '"forecast": "inf"' in path.read_text(encoding="utf-8")
    (event,) = read_events(path)
    assert event["forecast"] == math.inf and math.isnan(event["losses"][0])


def test_an_old_event_file_with_null_still_reads(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text('{"event": "candidate", "step": 1, "forecast": null}\n', encoding="utf-8")
    assert read_events(path)[0]["forecast"] is None


def test_the_benchmark_harness_uses_the_same_rule():
    pytest.importorskip("torch")
    from autolrs.bench import harness

    assert harness._json_safe is json_safe and harness._json_restore is json_restore
    result = harness.RunResult("w", "m", 0, 10, curve=[(1, math.nan)])
    data = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert data["final_score"] == "inf" and data["curve"] == [[1, "nan"]]
    again = harness.RunResult.from_json(data)
    assert again.final_score == math.inf and math.isnan(again.curve[0][1])
