"""`fathom pipeline`: discovery, compile of every pipeline (IR reloads), submit/schedule at the kfp.Client
boundary, and one slow local run of the data pipeline under kfp.local."""

from __future__ import annotations

import types

import kfp
import pytest
import yaml
from typer.testing import CliRunner

from fathom import pipeline_cli
from fathom.errors import ConfigError


def test_pipeline_discover_finds_data():
    found = pipeline_cli.discover()
    assert "data" in found
    for name, mod in found.items():
        assert callable(mod.PIPELINE) and isinstance(getattr(mod, "LOCAL_ARGUMENTS", {}), dict), name
    with pytest.raises(ConfigError, match="available"):
        pipeline_cli.get_pipeline("nope")


def test_pipeline_compile_all_pipelines(tmp_path):
    from kfp.components import load_component_from_file

    paths = pipeline_cli.compile_all(tmp_path)
    assert {p.stem for p in paths} == set(pipeline_cli.discover())
    for p in paths:
        assert load_component_from_file(str(p)) is not None
    docs = list(yaml.safe_load_all((tmp_path / "data.yaml").read_text()))
    spec = docs[0]
    tasks = spec["root"]["dag"]["tasks"]
    gen = tasks["duetqa-generate"]
    assert gen["cachingOptions"] == {} or gen["cachingOptions"].get("enableCache") is False  # caching off
    assert gen["retryPolicy"]["maxRetryCount"] == 2
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert all("fathom-cpu" in i for i in images)
    # no pip install of kfp at task start (install_kfp_package=False)
    for e in spec["deploymentSpec"]["executors"].values():
        assert "pip install" not in " ".join(e["container"].get("command", []))
    # the publish steps get the object-store secret as env on the cluster (kfp-kubernetes platform spec)
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert any("secretAsEnv" in cfg for cfg in platform.values())


def test_pipeline_cli_compile_and_list(tmp_path):
    from fathom.cli import app

    res = CliRunner().invoke(app, ["pipeline", "compile", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "data.yaml").exists()
    res = CliRunner().invoke(app, ["pipeline", "list"])
    assert res.exit_code == 0 and "fathom-data" in res.output


def test_pipeline_parse_args():
    assert pipeline_cli.parse_args(["n=3", "flag=true", 'cfg={"a": 1}', "name=x"]) == {
        "n": 3, "flag": True, "cfg": '{"a": 1}', "name": "x"}


class RecordingClient(kfp.Client):
    """kfp.Client at the protocol boundary: records what would be sent to the KFP API (no cluster here)."""

    def __init__(self):  # noqa: D107 - no connection set-up
        self.calls = []

    def create_run_from_pipeline_package(self, pipeline_file, arguments=None, run_name=None, experiment_name=None,
                                         **kw):
        with open(pipeline_file) as fh:
            spec = next(yaml.safe_load_all(fh))
        self.calls.append(("run", spec["pipelineInfo"]["name"], arguments, run_name, experiment_name))
        return types.SimpleNamespace(run_id="run-123")

    def get_experiment(self, experiment_id=None, experiment_name=None, namespace=None):
        raise ValueError("not found")

    def create_experiment(self, name, description=None, namespace=None):
        self.calls.append(("experiment", name))
        return types.SimpleNamespace(experiment_id="exp-1")

    def create_recurring_run(self, experiment_id, job_name, **kw):
        with open(kw["pipeline_package_path"]) as fh:
            spec = next(yaml.safe_load_all(fh))
        self.calls.append(("recurring", experiment_id, job_name, kw["cron_expression"], kw["params"],
                           spec["pipelineInfo"]["name"]))
        return types.SimpleNamespace(recurring_run_id="rr-9")


def test_pipeline_submit_and_schedule_arguments():
    c = RecordingClient()
    assert pipeline_cli.submit("data", c, arguments={"n_duetqa": 10}, experiment="exp") == "run-123"
    assert c.calls[-1] == ("run", "fathom-data", {"n_duetqa": 10}, "fathom-data", "exp")
    rid = pipeline_cli.schedule("data", c, cron="0 0 3 * * 0", arguments={"n_sft": 5})
    assert rid == "rr-9"
    assert c.calls[-2] == ("experiment", "fathom")
    assert c.calls[-1] == ("recurring", "exp-1", "fathom-data-weekly", "0 0 3 * * 0", {"n_sft": 5}, "fathom-data")
    with pytest.raises(ConfigError, match="6 fields"):
        pipeline_cli.schedule("data", c, cron="0 3 * * 0")


def test_pipeline_cli_submit_uses_host_and_token(monkeypatch):
    from fathom.cli import app

    seen = {}
    c = RecordingClient()

    def fake_make(host, namespace=None, verify_ssl=None):
        seen["host"] = host
        return c

    monkeypatch.setattr(pipeline_cli, "make_kfp_client", fake_make)
    res = CliRunner().invoke(app, ["pipeline", "submit", "data", "--host", "http://kfp.test", "--arg", "n_sft=2"])
    assert res.exit_code == 0, res.output
    assert seen["host"] == "http://kfp.test" and c.calls[-1][2] == {"n_sft": 2}
    res = CliRunner().invoke(app, ["pipeline", "schedule", "data", "--host", "http://kfp.test"])
    assert res.exit_code == 0 and "rr-9" in res.output


def test_pipeline_make_client_passes_token(monkeypatch):
    captured = {}

    class Fake:
        def __init__(self, **kw):
            captured.update(kw)

    monkeypatch.setattr(kfp, "Client", Fake)
    monkeypatch.setenv("FATHOM_KFP_TOKEN", "tok")
    pipeline_cli.make_kfp_client("http://kfp.test", namespace="ns")
    assert captured == {"host": "http://kfp.test", "namespace": "ns", "existing_token": "tok"}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_pipeline_data_runs_locally(tmp_path):
    """The data pipeline under kfp.local (SubprocessRunner, no venv: each task is a real subprocess that imports
    fathom) with n=2/1, publishing both datasets to a local 'bucket' folder. The model roles and the tool server are
    the instant stub endpoints on loopback, so the test measures the pipeline plumbing, not a 135M model on a busy
    CPU (`fathom pipeline run data --local` runs the same pipeline on the embedded model)."""
    import json

    import datasets

    from fathom.selfplay.stub import DuetQAStub, serve_stub

    out_uri = str(tmp_path / "bucket")
    with serve_stub(DuetQAStub()) as (role, tools):
        args = {
            "n_duetqa": 2, "n_sft": 1, "tools_url": tools, "output_uri": out_uri,
            "duetqa_config": json.dumps({"m1": role, "m2": role, "m3": role, "judge": role}),
            "sft_config": json.dumps({"policy": role, "teacher": role, "teacher_max_tokens": 4000}),
        }
        result = pipeline_cli.run_local("data", args, tmp_path / "root")
    assert result is not None
    duet = datasets.load_from_disk(str(tmp_path / "bucket" / "duetqa" / "hf"))
    sft = datasets.load_from_disk(str(tmp_path / "bucket" / "sft" / "hf"))
    assert len(duet) == 2 and len(sft) == 1 and sft[0]["messages"][2]["role"] == "assistant"
    rl = datasets.load_from_disk(str(tmp_path / "bucket" / "duetqa" / "rl" / "hf"))
    assert rl.column_names == ["prompt", "answer", "id", "source", "hops"]
    assert "| planned | 2 |" in (tmp_path / "bucket" / "duetqa" / "README.md").read_text()
    runs = list((tmp_path / "root").iterdir())
    assert len(runs) == 1
    executor_output = (runs[0] / "duetqa-generate" / "executor_output.json").read_text()
    assert "funnel_kept" in executor_output  # the Metrics artifact reached KFP
