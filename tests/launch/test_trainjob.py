"""The TrainJob of a GPU training step: rendered, validated against the vendored Trainer v2.3.0 CRD, and taken
through its lifecycle (create, watch status, stream logs, fail with the job's error, delete) by the Kubeflow SDK
against a fake Kubernetes API server on loopback."""

import copy
import hashlib
import json
from pathlib import Path

import pytest
import yaml
from fake_trainer_api import FakeTrainerAPI, Scenario, Served

from fathom.errors import ConfigError
from fathom.launch.config import LaunchConfig
from fathom.launch.trainjob import (
    CRD_DIR,
    RUN_LABEL,
    TrainJobFailed,
    delete_run_trainjobs,
    render_trainjob,
    run_trainjob,
    submit,
    trainer_client,
    trainjob_name,
    validate_trainjob,
)

COMMAND = ["python", "-m", "fathom.launch.node", "--plan", '{"fathom_argv": ["train", "search"]}']
SECRETS = {"fathom-s3": {"endpoint": "FATHOM_S3_ENDPOINT", "access_key": "FATHOM_S3_ACCESS_KEY"},
           "fathom-llm-keys": {"openai-api-key": "OPENAI_API_KEY"}}


def _cfg(**kw) -> LaunchConfig:
    base = {"launcher": "trainjob", "num_nodes": 2, "gpus_per_node": 8, "secrets": SECRETS, "optional_secrets": ["fathom-s3"],
                "run_id": "run-42", "namespace": "ml", "poll_s": 0.05, "timeout_s": 30, "image": "registry.test/fathom-trainer:1"}
    return LaunchConfig(**{**base, **kw})


def test_vendored_crds_are_the_pinned_release():
    readme = (CRD_DIR.parent / "README.md").read_text()
    for f in sorted(CRD_DIR.iterdir()):
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        assert f"`{f.name}`" in readme and digest in readme, f"{f.name} changed: update crds/README.md"


def test_rendered_trainjob_validates_and_carries_the_step():
    cfg = _cfg(work_pvc="fathom-work")
    obj = render_trainjob(cfg, trainjob_name("rapo-stage1", "run-42"), COMMAND, step="rapo-stage1")
    assert validate_trainjob(obj) == []
    spec = obj["spec"]
    assert spec["runtimeRef"] == {"kind": "ClusterTrainingRuntime", "name": "torch-distributed"}
    assert spec["trainer"]["numNodes"] == 2 and spec["trainer"]["command"] == COMMAND
    assert spec["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 8
    pod = spec["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    podspec = pod["template"]["spec"]["template"]["spec"]
    assert pod["name"] == "node" and podspec["nodeSelector"] and podspec["tolerations"][0]["key"] == "nvidia.com/gpu"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in podspec["containers"][0]["env"]}
    assert env["OPENAI_API_KEY"] == {"name": "fathom-llm-keys", "key": "openai-api-key"}
    assert env["FATHOM_S3_ENDPOINT"]["optional"] is True
    mounts = {m["mountPath"] for m in podspec["containers"][0]["volumeMounts"]}
    assert mounts == {"/dev/shm", "/workspace"}
    assert obj["metadata"]["labels"][RUN_LABEL] == "run-42"
    # the runtimes it references validate against their own vendored CRD
    for f in ("runtime-torch_distributed.yaml", "runtime-deepspeed_distributed.yaml"):
        assert validate_trainjob(yaml.safe_load((CRD_DIR / f).read_text())) == []


def test_validation_reports_what_the_api_server_would_reject():
    obj = render_trainjob(_cfg(), "Bad_Name", COMMAND)
    bad = copy.deepcopy(obj)
    bad["spec"]["trainer"]["numNodes"] = "two"
    bad["spec"]["trainer"]["gpus"] = 8
    problems = validate_trainjob(bad)
    assert any("numNodes" in p and "integer" in p for p in problems)
    assert any("'gpus' was unexpected" in p for p in problems)
    assert any("DNS-1035" in p for p in problems)
    with pytest.raises(ConfigError, match="does not validate"):
        run_trainjob(_cfg(), COMMAND, name="Bad_Name", client=object())


def test_names_are_stable_per_run_and_step():
    a, b = trainjob_name("rapo-stage1", "run-1"), trainjob_name("rapo-stage1", "run-1")
    assert a == b and a != trainjob_name("rapo-stage2", "run-1") and a != trainjob_name("rapo-stage1", "run-2")
    assert len(trainjob_name("x" * 200, "r")) <= 63


def test_launch_parameters_are_checked():
    assert LaunchConfig.from_parameters("", "").launcher == "inprocess"
    cfg = LaunchConfig.from_parameters("trainjob", json.dumps({"num_nodes": 4}))
    assert (cfg.launcher, cfg.num_nodes) == ("trainjob", 4)
    for launcher, extra in (("slurm", "{}"), ("trainjob", "[1]"), ("trainjob", '{"num_node": 2}'),
                            ("trainjob", "{bad")):
        with pytest.raises(ConfigError):
            LaunchConfig.from_parameters(launcher, extra)
    assert LaunchConfig(accelerate_config="zero3").accelerate_config_file().name == "accelerate_zero3.yaml"
    with pytest.raises(ConfigError, match="no accelerate config"):
        LaunchConfig(accelerate_config="zero9").accelerate_config_file()


# --------------------------------------------------------------------------------------------- lifecycle
def _strip_server_fields(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k != "status"}


def test_lifecycle_complete_streams_logs_and_deletes():
    fake = FakeTrainerAPI(Scenario(outcome="Complete", logs=["step 1 loss 0.71", "step 2 loss 0.64", "saved"]))
    cfg = _cfg()
    with Served(fake) as srv:
        client = trainer_client("ml", client_configuration=srv.configuration)
        lines: list[str] = []
        final = run_trainjob(cfg, COMMAND, step="rapo-stage1", client=client, on_log=lines.append)
    name = trainjob_name("rapo-stage1", "run-42")
    assert final["status"]["conditions"][0]["type"] == "Complete"
    assert lines == ["step 1 loss 0.71", "step 2 loss 0.64", "saved"]
    assert fake.log_reads and fake.log_reads[0]["follow"] and fake.log_reads[0]["container"] == "node"
    assert fake.deleted == [name] and not fake.jobs
    # what the SDK sent is exactly the rendered (and validated) TrainJob
    assert len(fake.created) == 1
    assert _strip_server_fields(fake.created[0]) == render_trainjob(cfg, name, COMMAND, step="rapo-stage1")


def test_transient_api_errors_are_retried():
    fake = FakeTrainerAPI(Scenario(outcome="Complete", flaky_gets=3))
    with Served(fake) as srv:
        client = trainer_client("ml", client_configuration=srv.configuration)
        final = run_trainjob(_cfg(poll_s=0.01), COMMAND, step="s1", client=client, on_log=lambda _: None)
    assert final["status"]["conditions"][0]["type"] == "Complete" and fake.scenario.flaky_gets == 0


def test_a_hanging_log_stream_does_not_outlive_the_timeout():
    fake = FakeTrainerAPI(Scenario(outcome="Complete", logs=["step 1", "step 2"], line_delay_s=1.5,
                                   finish_after_gets=10**6))
    with Served(fake) as srv:
        client = trainer_client("ml", client_configuration=srv.configuration)
        with pytest.raises(TimeoutError, match="did not finish"):
            run_trainjob(_cfg(timeout_s=1.0, poll_s=0.05), COMMAND, step="s1", client=client, on_log=lambda _: None)
    assert fake.deleted == [trainjob_name("s1", "run-42")]  # deleted on the way out all the same


def test_lifecycle_failed_raises_the_jobs_error_and_deletes():
    fake = FakeTrainerAPI(Scenario(outcome="Failed", message="node-1: CUDA out of memory (exit code 1)",
                                   logs=["step 1 loss 0.7", "torch.OutOfMemoryError: CUDA out of memory"]))
    with Served(fake) as srv:
        client = trainer_client("ml", client_configuration=srv.configuration)
        with pytest.raises(TrainJobFailed) as err:
            run_trainjob(_cfg(), COMMAND, step="sft", client=client, on_log=lambda _: None)
    assert err.value.message == "node-1: CUDA out of memory (exit code 1)"
    assert "OutOfMemoryError" in str(err.value) and err.value.logs[-1].startswith("torch.OutOfMemoryError")
    assert fake.deleted == [trainjob_name("sft", "run-42")]


def test_fake_api_rejects_what_the_crd_rejects():
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    fake = FakeTrainerAPI()
    bad = render_trainjob(_cfg(), "fathom-bad", COMMAND)
    bad["spec"]["trainer"]["numNodes"] = "2"
    with Served(fake) as srv:
        api = k8s.CustomObjectsApi(k8s.ApiClient(srv.configuration))
        with pytest.raises(ApiException) as err:
            api.create_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", "ml", "trainjobs", bad)
    assert err.value.status == 422 and "numNodes" in err.value.body and not fake.jobs


def test_retry_adopts_a_running_job_and_exit_handler_deletes_the_runs_jobs():
    fake = FakeTrainerAPI()
    cfg = _cfg(delete_on_exit=False)
    with Served(fake) as srv:
        client = trainer_client("ml", client_configuration=srv.configuration)
        a = submit(client, cfg, trainjob_name("s1", "run-42"), COMMAND, step="s1")
        again = submit(client, cfg, a, COMMAND, step="s1")  # the retried task: same name, adopted
        b = submit(client, _cfg(run_id="other-run"), trainjob_name("s1", "other-run"), COMMAND, step="s1")
        assert again == a and len(fake.created) == 2
        assert delete_run_trainjobs("run-42", client=client) == [a]
        assert list(fake.jobs) == [("ml", b)]


def test_vendored_readme_names_source_and_tag():
    text = (Path(CRD_DIR).parent / "README.md").read_text()
    assert "kubeflow/trainer" in text and "v2.3.0" in text
