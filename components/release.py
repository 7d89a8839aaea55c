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
):
    """Checkpoint (folder, s3:// URI or `embedded`) → serving folder `model` (safetensors, tokenizer, nested YaRN
    rope_scaling when `yarn_factor` > 0, manifest). `upload_uri` (s3://...) also uploads it. An empty `src` skips
    the step (e.g. a release of the search model only)."""
    from fathom.convert.convert import ConvertConfig, convert_checkpoint

    if not src:
        model.metadata["skipped"] = True
        return

    cfg = ConvertConfig(src=src, out=model.path, dtype=dtype,
                        yarn_factor=float(yarn_factor) if float(yarn_factor) > 0 else None,
                        original_max_pos=int(original_max_pos) if float(yarn_factor) > 0 and int(original_max_pos) > 0
                        else None, upload=upload_uri or None, force=True)
    result = convert_checkpoint(cfg)
    m = result.manifest
    model.metadata.update({"dtype": m["dtype"], "source": m["source"], "source_kind": m["source_kind"],
                           "rope_scaling": m["rope_scaling"] or {}, "uri": result.uploaded_to or ""})
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

    from fathom.deploy.manifests import DeployConfig
    from fathom.deploy.release import deploy_stage, servers_dir_for

    cfg = DeployConfig.model_validate(json.loads(deploy_config or "{}"))
    state = deploy_stage(cfg, manifests_dir=manifests.path, state_dir=release.path, model_dir=Path(model.path),
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
def teardown_release(servers_dir: str, run_id: str, ephemeral: bool, deploy_config: str) -> str:
    """Exit handler: stop the local servers the run started; `ephemeral` also deletes the cluster release."""
    import json

    from fathom.deploy.manifests import DeployConfig
    from fathom.deploy.release import servers_dir_for, teardown_stage

    cfg = DeployConfig.model_validate(json.loads(deploy_config or "{}"))
    return json.dumps(teardown_stage(servers_dir_for(servers_dir, run_id), ephemeral=bool(ephemeral), cfg=cfg))
