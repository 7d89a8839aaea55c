"""The release pipeline: convert the trained checkpoints → deploy (KServe, or a local server) → smoke test with
rollback; an exit handler releases what the run started.

    fathom pipeline compile --out build/       # IR YAML
    fathom pipeline run release --local        # kfp.local: embedded model → manifests → local server → smoke

On a cluster (`cluster=True`) the deploy step applies the manifests rendered from `deploy_config` (a JSON
`fathom.deploy.manifests.DeployConfig`); its `storage_uri`s should be the `*_upload_uri`s the convert steps write.

This pipeline is the manual path (a first release, or re-releasing a known version): it takes immutable, versioned
checkpoint and model URIs (no defaults; a `.../latest` storage URI is refused by the DeployConfig) and is not
scheduled. The weekly path is `fathom-retrain`, whose deploy is gated on evaluation and writes per-run prefixes.
"""

import json

from kfp import dsl

from components.base import with_s3
from components.release import convert_checkpoint, deploy_release, smoke_test, teardown_release

LOCAL_ARGUMENTS = {
    "policy_src": "embedded",
    "policy_upload_uri": "",
    "synth_src": "",  # the embedded run releases the search model only (a second conversion adds ~30 s)
    "synth_upload_uri": "",
    "dtype": "bf16",
    "deploy_config": json.dumps({"policy": {"name": "fathom-search", "storage_uri": "s3://fathom/models/fathom-search/local",
                                            "max_model_len": 8192}}),
    "cluster": False,
    "servers_dir": "",
    "expect": "",
    "ephemeral": False,
}


@dsl.pipeline(name="fathom-release",
              description="Convert the search model and the synthesizer, deploy them with the tool server on KServe, "
                          "smoke-test, roll back on failure.")
def release_pipeline(
    policy_src: str,
    policy_upload_uri: str,
    synth_src: str,
    synth_upload_uri: str,
    synth_yarn_factor: float = 2.0,
    synth_original_max_pos: int = 40960,
    dtype: str = "bf16",
    deploy_config: str = "{}",
    cluster: bool = True,
    servers_dir: str = "",
    ready_timeout_s: float = 1800.0,
    expect: str = "",
    rollback: bool = True,
    ephemeral: bool = False,
):
    """`*_src`: checkpoint folders/URIs (`embedded` for the embedded model; empty `synth_src` skips the
    synthesizer). `servers_dir`: where local servers are recorded (empty: a per-run folder). `ephemeral`: the exit
    handler also deletes the cluster release (for a staging namespace)."""
    run_servers = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    teardown = teardown_release(servers_dir=servers_dir, run_id=run_servers, ephemeral=ephemeral,
                                deploy_config=deploy_config)
    teardown.set_display_name("release what the run started").set_caching_options(False)
    with dsl.ExitHandler(teardown, name="release"):
        policy = convert_checkpoint(src=policy_src, dtype=dtype, yarn_factor=0.0, original_max_pos=0,
                                    upload_uri=policy_upload_uri)
        policy.set_display_name("convert search model").set_cpu_limit("4").set_memory_limit("32G")
        with_s3(policy)  # reads the checkpoint URI, uploads the serving folder
        synth = convert_checkpoint(src=synth_src, dtype=dtype, yarn_factor=synth_yarn_factor,
                                   original_max_pos=synth_original_max_pos, upload_uri=synth_upload_uri)
        synth.set_display_name("convert synthesizer (YaRN)").set_cpu_limit("4").set_memory_limit("32G")
        with_s3(synth)
        deploy = deploy_release(model=policy.outputs["model"], deploy_config=deploy_config, cluster=cluster,
                                servers_dir=servers_dir, run_id=run_servers, ready_timeout_s=ready_timeout_s)
        deploy.after(synth)
        deploy.set_display_name("deploy").set_caching_options(False).set_retry(num_retries=1)
        with_s3(deploy)  # a Model artifact may carry its object-store URI
        smoke = smoke_test(release=deploy.outputs["release"], expect=expect, agent=False, rollback=rollback)
        smoke.set_display_name("smoke test / rollback").set_caching_options(False)


PIPELINE = release_pipeline
