"""End to end on the embedded model and the offline web: `fathom eval --dataset offline-web` (slow)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fathom_eval_offline_web_embedded(tmp_path, embedded_model_dir):
    from fathom.cli import app

    out = tmp_path / "ow"
    args = ["eval", "--dataset", "offline-web", "--limit", "2", "--offline-n", "2", "--out", str(out),
            "--max-turns", "1", "--max-tokens", "16", "--concurrency", "1"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x.strip()]
    assert len(rows) == 2 and all(row["dataset"] == "offline-web" for row in rows)
    assert all(row["status"] in ("ok", "error") and row["grader"] in ("em", "number", "mc", None) for row in rows)
    assert all(row["transcript"] and "<|im_start|>" in row["transcript"] for row in rows if row["status"] == "ok")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["benchmarks"]["offline-web"]["n"] == 2
    assert "offline-web" in (out / "report.html").read_text()
    again = CliRunner().invoke(app, args)  # finished: nothing to do
    assert again.exit_code == 0 and "nothing to do" in again.output
