"""`fathom pipeline`: discovery, compile of every pipeline (IR reloads), argument types, upload/submit/schedule
through the real kfp.Client against a fake KFP v2beta1 API on loopback, and one slow local run of the data
pipeline under kfp.local."""

from __future__ import annotations

import kfp
import kfp_server_api
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
    assert pipeline_cli.parse_args(["n=3", "flag=true", 'cfg={"a": 1}', "name=x", 'b=["x","y"]']) == {
        "n": 3, "flag": True, "cfg": {"a": 1}, "name": "x", "b": ["x", "y"]}


def test_pipeline_arguments_fit_parameter_types():
    """Lists travel as JSON arrays (KFP rejects a string for a LIST parameter); JSON configs as strings."""
    types = pipeline_cli.parameter_types("evaluate")
    assert types["benchmarks"] == "LIST" and types["config_json"] == "STRING" and types["limit"] == "NUMBER_INTEGER"
    args = pipeline_cli.coerce_arguments(types, pipeline_cli.parse_args(
        ['benchmarks=["simpleqa"]', 'config_json={"concurrency": 2}', "limit=3", "name=42", "gate_min_delta=1"]))
    assert args == {"benchmarks": ["simpleqa"], "config_json": '{"concurrency": 2}', "limit": 3, "name": "42",
                    "gate_min_delta": 1.0}
    assert pipeline_cli.coerce_arguments(types, {"benchmarks": '["a"]'}) == {"benchmarks": ["a"]}
    for bad, match in (({"benchmarks": "simpleqa"}, "JSON list"), ({"limit": "x"}, "integer"),
                       ({"nope": 1}, "not parameters")):
        with pytest.raises(ConfigError, match=match):
            pipeline_cli.coerce_arguments(types, bad)


@pytest.fixture()
def kfp_api():
    """The fake KFP v2beta1 API on loopback (tests/data/fake_kfp.py)."""
    from fake_kfp import ServedFakeKFP

    with ServedFakeKFP() as served:
        yield served


def test_fake_kfp_rejects_what_the_backend_rejects(kfp_api):
    """The fake validates bodies with the kfp-server-api models and parameter types against the uploaded spec."""
    import httpx

    r = httpx.post(f"{kfp_api.url}/apis/v2beta1/experiments", json={"display_name": "x", "colour": "red"})
    assert r.status_code == 400 and "not in the API model" in r.text
    client = kfp.Client(host=kfp_api.url)
    pid, vid, _ = pipeline_cli.upload("evaluate", client, version="v1")
    exp = pipeline_cli.experiment_id(client, "fathom")
    with pytest.raises(kfp_server_api.ApiException) as err:  # a list parameter sent as a JSON string
        client.run_pipeline(exp, "bad", params={"benchmarks": '["simpleqa"]'}, pipeline_id=pid, version_id=vid)
    assert err.value.status == 400 and "LIST parameter got str" in err.value.body
    with pytest.raises(kfp_server_api.ApiException, match="404"):
        client.run_pipeline(exp, "bad", params={}, pipeline_id=pid, version_id="nope")
    rpid, rvid, _ = pipeline_cli.upload("release", client, version="r1")
    with pytest.raises(kfp_server_api.ApiException) as err:  # release has required parameters
        client.run_pipeline(exp, "bad", params={}, pipeline_id=rpid, version_id=rvid)
    assert "policy_src: required" in err.value.body


def test_pipeline_upload_run_schedule_round_trip(kfp_api, monkeypatch):
    """upload → a new version per upload → run of the newest version → recurring run created, then updated (not
    duplicated) by a second `schedule`; all through the real kfp.Client over HTTP."""
    from fathom.cli import app

    monkeypatch.setenv("FATHOM_GIT_REVISION", "abc1234")
    fake = kfp_api.fake
    runner = CliRunner()
    res = runner.invoke(app, ["pipeline", "upload", "evaluate", "--host", kfp_api.url])
    assert res.exit_code == 0, res.output
    assert len(fake.pipelines) == 1 and len(fake.versions) == 1
    (pipeline,) = fake.pipelines.values()
    assert pipeline["display_name"] == "fathom-evaluate"
    (v1,) = fake.versions.values()
    from fathom import __version__

    assert v1["display_name"].startswith(f"{__version__}-abc1234-")
    assert v1["pipeline_spec"]["pipelineInfo"]["name"] == "fathom-evaluate"
    # a second upload: same pipeline, a new version
    res = runner.invoke(app, ["pipeline", "upload", "evaluate", "--host", kfp_api.url, "--version", "v2"])
    assert res.exit_code == 0, res.output
    assert len(fake.pipelines) == 1 and {v["display_name"] for v in fake.versions.values()} == {
        v1["display_name"], "v2"}
    v2_id = next(k for k, v in fake.versions.items() if v["display_name"] == "v2")

    # run the newest uploaded version, list parameters as JSON values, pipeline root and service account set
    res = runner.invoke(app, ["pipeline", "submit", "evaluate", "--host", kfp_api.url, "--arg",
                              'benchmarks=["simpleqa","frames"]', "--arg", 'config_json={"concurrency": 2}',
                              "--arg", "limit=5", "--pipeline-root", "s3://fathom/pipeline-root"])
    assert res.exit_code == 0, res.output
    (run,) = fake.runs.values()
    assert run["pipeline_version_reference"] == {"pipeline_id": pipeline["pipeline_id"], "pipeline_version_id": v2_id}
    assert "pipeline_spec" not in run  # an uploaded version is referenced, not inlined
    assert run["runtime_config"] == {"parameters": {"benchmarks": ["simpleqa", "frames"],
                                                    "config_json": '{"concurrency": 2}', "limit": 5},
                                     "pipeline_root": "s3://fathom/pipeline-root"}
    assert run["service_account"] == pipeline_cli.DEFAULT_SERVICE_ACCOUNT
    (exp,) = fake.experiments.values()
    assert exp["display_name"] == "fathom" and run["experiment_id"] == exp["experiment_id"]

    # schedule: created, referencing the version, one at a time, no catch-up
    res = runner.invoke(app, ["pipeline", "schedule", "evaluate", "--host", kfp_api.url, "--cron", "0 0 3 * * 0",
                              "--arg", "limit=1", "--version", v1["display_name"], "--service-account", "fathom-runner"])
    assert res.exit_code == 0 and "created" in res.output, res.output
    (rr,) = fake.recurring_runs.values()
    assert rr["display_name"] == "fathom-evaluate-weekly" and rr["mode"] == "ENABLE"
    assert rr["pipeline_version_reference"]["pipeline_version_id"] == v1["pipeline_version_id"]
    assert int(rr["max_concurrency"]) == 1 and rr["no_catchup"] is True
    assert rr["service_account"] == "fathom-runner" and rr["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 0"
    assert len(fake.experiments) == 1  # the experiment is reused

    # a second schedule of the same name updates it (newest version, new cron): still one recurring run
    res = runner.invoke(app, ["pipeline", "schedule", "evaluate", "--host", kfp_api.url, "--cron", "0 0 4 * * 6",
                              "--arg", "limit=2"])
    assert res.exit_code == 0 and "updated" in res.output, res.output
    (rr2,) = fake.recurring_runs.values()
    assert rr2["display_name"] == "fathom-evaluate-weekly"
    assert rr2["pipeline_version_reference"]["pipeline_version_id"] == v2_id
    assert rr2["trigger"]["cron_schedule"]["cron"] == "0 0 4 * * 6"
    assert rr2["runtime_config"]["parameters"] == {"limit": 2}
    with pytest.raises(ConfigError, match="6 fields"):
        pipeline_cli.schedule("evaluate", kfp.Client(host=kfp_api.url), cron="0 3 * * 0")


def test_pipeline_submit_needs_an_upload(kfp_api):
    client = kfp.Client(host=kfp_api.url)
    with pytest.raises(ConfigError, match="not uploaded"):
        pipeline_cli.submit("data", client)
    pipeline_cli.upload("data", client, version="only")
    with pytest.raises(ConfigError, match="no version 'nope'"):
        pipeline_cli.submit("data", client, version="nope")
    run_id = pipeline_cli.submit("data", client, version="only", arguments={"n_sft": 2})
    assert kfp_api.fake.runs[run_id]["runtime_config"]["parameters"] == {"n_sft": 2}


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
