"""The forecast-error study (``autolrs bench --forecast-study``) on a small digits setting."""

from __future__ import annotations

import math

from autolrs.bench.forecast_study import RULES, run_study, score_rules, write_study


def test_forecast_study_scores_every_rule_and_writes_a_report(tmp_path):
    study = run_study(
        "digits",
        fractions=(0.05, 0.2),
        lr_factors=(0.1, 1.0, 3.0),
        tau_fraction=0.15,
        log=lambda m: None,
    )
    assert study["trial"] < study["tau"]
    assert len(study["points"]) == 2
    for point in study["points"]:
        for lr, curve in point["curves"].items():
            assert len(curve) == study["tau"] or not math.isfinite(curve[-1])
        assert set(point["annealed"]) == set(study["lrs"])
    summary = score_rules(study)
    assert set(RULES) < set(summary)
    for row in summary.values():
        assert row["decisions"] == 2
        assert row["mean_regret"] >= 0.0
        assert -1.0 <= row["rank_correlation"] <= 1.0 or math.isnan(row["rank_correlation"])
    path = tmp_path / "ablation-forecast.md"
    text = write_study([study], str(path), "autolrs bench --forecast-study")
    assert path.read_text() == text
    assert "## digits" in text and "robust exponential" in text
