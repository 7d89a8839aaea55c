"""The release pipeline compiles, and runs end to end under kfp.local on the embedded model."""

import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def test_release_pipeline_compiles(tmp_path):
    import yaml
    from kfp import compiler

    from pipelines.release import LOCAL_ARGUMENTS, PIPELINE

    out = tmp_path / "release.yaml"
    compiler.Compiler().compile(PIPELINE, str(out))
    ir = next(yaml.safe_load_all(out.read_text()))  # + the kfp-kubernetes platform spec
    tasks = ir["root"]["dag"]["tasks"]
    assert tasks["teardown-release"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"  # exit handler
    inner = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert set(inner) == {"convert-checkpoint", "convert-checkpoint-2", "deploy-release", "smoke-test"}
    assert set(LOCAL_ARGUMENTS) <= set(ir["root"]["inputDefinitions"]["parameters"])


@pytest.mark.slow
@pytest.mark.longest
@pytest.mark.timeout(420)
def test_release_pipeline_runs_locally(tmp_path):
    """embedded model → convert (bf16) → render + validate manifests → transformers serve → smoke → exit handler
    stops the server. (~1 min on an idle 2-core machine; up to 3 min when the CPU is shared.)"""
    import kfp.local

    from fathom.deploy.local import _alive
    from pipelines.release import LOCAL_ARGUMENTS, PIPELINE

    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    t0 = time.time()
    PIPELINE(**{**LOCAL_ARGUMENTS, "servers_dir": str(tmp_path / "servers"), "expect": "paris"})
    print(f"release pipeline: {time.time() - t0:.0f}s")
    run = next((tmp_path / "root").iterdir())
    report = (run / "smoke-test" / "report").read_text()
    assert "PASS policy_completions" in report and "PASS policy_chat" in report
    assert (run / "deploy-release" / "manifests" / "policy.yaml").exists()
    import json

    state = json.loads((run / "deploy-release" / "release" / "release.json").read_text())
    assert state["mode"] == "local" and not _alive(state["server"]["pid"])  # the exit handler stopped it
    assert not list((tmp_path / "servers").glob("*/local-servers.json"))
