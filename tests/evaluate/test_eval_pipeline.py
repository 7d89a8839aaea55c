"""The evaluation pipeline compiles (fan-out, fan-in, gate) and runs under kfp.local on the embedded default."""

from __future__ import annotations

import json

import pytest
import yaml


def test_evaluate_pipeline_compiles(tmp_path):
    from kfp import compiler

    from pipelines.evaluate import LOCAL_ARGUMENTS, PIPELINE

    out = tmp_path / "evaluate.yaml"
    compiler.Compiler().compile(PIPELINE, str(out))
    spec = next(yaml.safe_load_all(out.read_text()))  # + the kfp-kubernetes platform spec
    text = out.read_text()
    assert "for-loop" in text and "evaluation-report" in text and "evaluation-gate" in text
    comps = spec["components"]
    assert "comp-evaluate-benchmark" in comps
    outs = comps["comp-evaluate-benchmark"]["outputDefinitions"]["artifacts"]
    assert outs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert outs["report_html"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert outs["report_md"]["artifactType"]["schemaTitle"] == "system.Markdown"
    runs_in = comps["comp-evaluation-report"]["inputDefinitions"]["artifacts"]["runs"]
    assert runs_in.get("isArtifactList") is True
    assert set(LOCAL_ARGUMENTS) <= set(spec["root"]["inputDefinitions"]["parameters"])


def test_stage_functions_cast_floats_and_merge(tmp_path, monkeypatch):
    """What the components call, with KFP's float numbers, on a tiny file and the closed-book agent over a
    loopback-free injected config (no model: the merge and gate use pre-written runs)."""
    from fathom.evaluate.runner import atomic_write_text
    from fathom.evaluate.stages import gate_stage, headline, merge_runs

    for name, ds, flags in (("r1", "a", [1, 0, 1]), ("r2", "b", [0, 0, 1])):
        d = tmp_path / name
        d.mkdir()
        rows = [{"dataset": ds, "id": str(i), "status": "ok", "label": "correct" if c else "incorrect",
                 "agent": "x", "model": "m"} for i, c in enumerate(flags)]
        atomic_write_text(d / "results.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    m = merge_runs([tmp_path / "r1", tmp_path / "r2"], tmp_path / "all", name="cand")
    assert list(m.benchmarks) == ["a", "b"] and m.overall.n == 6 and m.overall.correct == 3
    h = headline(m)
    assert h["a_accuracy"] == pytest.approx(2 / 3) and h["n"] == 6.0
    assert (tmp_path / "all" / "report.html").exists()
    assert gate_stage(tmp_path / "all", "", tmp_path / "gate") is None
    comp = gate_stage(tmp_path / "all", str(tmp_path / "all"), tmp_path / "gate")
    assert comp is not None and not comp.passed and (tmp_path / "gate" / "comparison.md").exists()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_evaluate_pipeline_runs_under_kfp_local(tmp_path, embedded_model_dir):
    from fathom.pipeline_cli import run_local

    run_local("evaluate", root=tmp_path / "root")
    reports = sorted((tmp_path / "root").rglob("evaluation-report/combined/metrics.json"))
    assert reports, "the fan-in report task wrote no combined run"
    metrics = json.loads(reports[-1].read_text())
    assert set(metrics["benchmarks"]) == {"offline-web", "simpleqa"}
    assert metrics["overall"]["n"] == 2  # limit 1 per benchmark: every example yields a row
    html = next((tmp_path / "root").rglob("evaluation-report/report_html"))
    assert "offline-web" in html.read_text()
