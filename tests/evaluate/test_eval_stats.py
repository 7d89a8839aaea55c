"""Statistics from worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fathom.evaluate.stats import bootstrap_ci, compute_metrics, paired_bootstrap_delta, summarize


def test_bootstrap_ci_known_data():
    data = [1] * 60 + [0] * 40
    lo, hi = bootstrap_ci(data, seed=0, n_resamples=4000)
    # normal approximation: 0.6 ± 1.96 * sqrt(0.24/100) = [0.504, 0.696]
    assert lo == pytest.approx(0.504, abs=0.02) and hi == pytest.approx(0.696, abs=0.02)
    assert (lo, hi) == bootstrap_ci(data, seed=0, n_resamples=4000)  # seeded: reproducible
    assert bootstrap_ci([1, 1, 1]) == (1.0, 1.0)
    assert all(math.isnan(x) for x in bootstrap_ci([]))


def test_paired_delta():
    a = [0] * 50 + [1] * 50
    b = [1] * 80 + [0] * 20
    d, lo, hi = paired_bootstrap_delta(a, b, seed=1)
    # d: +1 x50, 0 x30, -1 x20 -> sd 0.78, se 0.078: CI about [0.147, 0.453]
    assert d == pytest.approx(0.3) and lo == pytest.approx(0.147, abs=0.03) and hi == pytest.approx(0.453, abs=0.03)
    with pytest.raises(ValueError):
        paired_bootstrap_delta([1], [1, 0])


def _row(ds, i, label, status="ok", **kw):
    return {"dataset": ds, "id": str(i), "label": label, "status": status, "grader": "em",
            "score": 1.0 if label == "correct" else 0.0, **kw}


def test_summarize_counts_errors_against_accuracy():
    rows = ([_row("a", i, "correct", turns=2, tool_calls=4, latency_s=1.0) for i in range(6)]
            + [_row("a", 6, "not_attempted", turns=1, tool_calls=0, latency_s=1.0)]
            + [_row("a", 7, "incorrect", turns=3, tool_calls=2, latency_s=1.0)]
            + [_row("a", i, None, status="error", latency_s=3.0, error="boom") for i in (8, 9)])
    m = summarize(rows, dataset="a")
    assert m.n == 10 and m.correct == 6
    assert m.accuracy == pytest.approx(0.6)          # errors in the denominator
    assert m.accuracy_ok == pytest.approx(6 / 8)
    assert m.error_rate == pytest.approx(0.2) and m.not_attempted_rate == pytest.approx(0.1)
    assert m.mean_tool_calls == pytest.approx((6 * 4 + 2) / 10)
    assert m.mean_latency_s == pytest.approx(1.4)
    assert m.ci_low <= 0.6 <= m.ci_high


def test_compute_metrics_per_benchmark_and_macro():
    rows = [_row("a", i, "correct") for i in range(4)] + [_row("b", i, "incorrect") for i in range(4)] + \
        [_row("b", 9, "correct")]
    m = compute_metrics(rows)
    assert list(m.benchmarks) == ["a", "b"]
    assert m.benchmarks["a"].accuracy == 1.0 and m.benchmarks["b"].accuracy == pytest.approx(0.2)
    assert m.macro_accuracy == pytest.approx(0.6) and m.overall.accuracy == pytest.approx(5 / 9)
    assert np.isfinite(m.overall.ci_low)
