"""KFP components of the release: convert a checkpoint, deploy (cluster: KServe; locally: a local server),
smoke-test with rollback, and the exit handler's teardown. Thin wrappers over `fathom.convert` / `fathom.deploy`.

No `from __future__ import annotations` here: KFP reads the real annotation objects.
"""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Metrics, Model, Output

from components.base import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def convert_checkpoint(
    src: str,
    dtype: str,
    yarn_factor: float,
    original_max_pos: int,
    upload_uri: str,
    model: Output[Model],
    metrics: Output[Metrics],
    checkpoint: Input[Model] = None,
):
    """Checkpoint → serving folder (safetensors, tokenizer, nested YaRN rope_scaling when `yarn_factor` > 0,
    manifest). The checkpoint is the `checkpoint` Model artifact of a training step when given (its folder or its
    object-store URI), else `src` (a folder, an s3:// URI or `embedded`); an empty `src` without `checkpoint`
    skips the step (e.g. a release of the search model only). With `upload_uri` (s3://...) the serving folder is
    uploaded there and `model` carries that URI (no copy in the pipeline root); else `model` holds the folder."""
    from components.artifacts import export_model, model_source, work_dir
    from fathom.convert.convert import ConvertConfig, convert_checkpoint

    src = model_source(checkpoint) if checkpoint is not None else src
    if not src:
        model.metadata["skipped"] = True
        return
    yarn = float(yarn_factor) > 0
    out = work_dir(model, "serving") if upload_uri else model.path
    cfg = ConvertConfig(src=src, out=out, dtype=dtype, yarn_factor=float(yarn_factor) if yarn else None,
                        original_max_pos=int(original_max_pos) if yarn and int(original_max_pos) > 0 else None,
                        upload=upload_uri or None, force=True)
    result = convert_checkpoint(cfg)
    m = result.manifest
    export_model(model, final=None, uri=result.uploaded_to or "",
                 metadata={"dtype": m["dtype"], "source": m["source"], "source_kind": m["source_kind"]})
    model.metadata["rope_scaling"] = m["rope_scaling"] or {}
    metrics.log_metric("parameters", m["parameters"])
    metrics.log_metric("bytes", sum(f["bytes"] for f in m["files"].values()))
    if m.get("verification"):
        metrics.log_metric("verify_seconds", m["verification"]["seconds"])


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def deploy_release(
    model: Input[Model],
    deploy_config: str,
    cluster: bool,
    servers_dir: str,
    run_id: str,
    ready_timeout_s: float,
    manifests: Output[Artifact],
    release: Output[Artifact],
) -> str:
    """Render + validate the KServe manifests (`manifests`), then apply them and wait for Ready (`cluster`), or
    serve `model` on this machine (recorded in `servers_dir` for the exit handler). Returns the policy role."""
    import json
    from pathlib import Path

    from components.artifacts import model_source
    from fathom.deploy.manifests import DeployConfig
    from fathom.deploy.release import deploy_stage, servers_dir_for
    from fathom.rl.stage import materialise_model

    cfg = DeployConfig.model_validate(json.loads(deploy_config or "{}"))
    # a cluster release serves the storage URIs of `deploy_config`; a local one needs the folder here
    model_dir = Path(model.path) if cluster else Path(materialise_model(model_source(model),
                                                                        Path(release.path + ".work")))
    state = deploy_stage(cfg, manifests_dir=manifests.path, state_dir=release.path, model_dir=model_dir,
                         cluster=bool(cluster), servers_dir=servers_dir_for(servers_dir, run_id),
                         ready_timeout_s=float(ready_timeout_s), release_id=run_id)
    release.metadata.update({"mode": state["mode"], "policy": state["policy"]})
    return state["policy"]


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def smoke_test(
    release: Input[Artifact],
    expect: str,
    agent: bool,
    rollback: bool,
    metrics: Output[Metrics],
    report: Output[Markdown],
):
    """Call the deployed endpoints once (with `agent`, a local release also runs the search agent on a held-out
    question: a tool call and a boxed answer required); on failure roll the InferenceServices back (cluster) and
    fail the task."""
    from fathom.deploy.apply import DeployError
    from fathom.deploy.release import smoke_stage

    result = smoke_stage(release.path, expect=expect or None, rollback=bool(rollback), raise_on_failure=False,
                         agent=bool(agent))
    for key, value in result.metrics().items():
        metrics.log_metric(key, value)
    with open(report.path, "w") as f:
        f.write("# Release smoke test\n\n```\n" + result.summary() + "\n```\n")
    if not result.ok:
        raise DeployError("smoke test failed:\n" + result.summary())


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def teardown_release(servers_dir: str, run_id: str, ephemeral: bool, deploy_config: str, launcher: str = "inprocess",
                     launch_json: str = "{}") -> str:
    """Exit handler: stop the local servers the run started; `ephemeral` also deletes the cluster release; with
    `launcher` trainjob, delete the Kubeflow Trainer TrainJobs the run created (label `fathom.ai/run-id`)."""
    import json

    from fathom.deploy.manifests import DeployConfig
    from fathom.deploy.release import servers_dir_for, teardown_stage
    from fathom.launch.config import LaunchConfig

    cfg = DeployConfig.model_validate(json.loads(deploy_config or "{}"))
    out = teardown_stage(servers_dir_for(servers_dir, run_id), ephemeral=bool(ephemeral), cfg=cfg)
    launch = LaunchConfig.from_parameters(launcher, launch_json)
    if launch.launcher == "trainjob":
        from fathom.launch.trainjob import delete_run_trainjobs

        out["trainjobs_deleted"] = delete_run_trainjobs(run_id, namespace=launch.namespace,
                                                        config_file=launch.kubeconfig)
    return json.dumps(out)
