"""The bootstrap pipeline, run once on a new cluster before the first `retrain` (the cluster has internet):
seed the base models from Hugging Face into object storage, deploy the tool server, and record that no baseline
exists so the first retrain's gate makes an explicit first-release decision. Idempotent: re-running keeps what is
there.

    fathom pipeline upload bootstrap --host $KFP && fathom pipeline submit bootstrap --host $KFP
"""

from kfp import dsl

from components.base import S3, with_secrets
from components.bootstrap import deploy_tool_server, record_no_baseline, seed_base_models

#: nothing to download or deploy on one box: the embedded model is shipped, the offline web runs per step
LOCAL_ARGUMENTS: dict = {"base_models": {}, "models_uri": "", "baseline_uri": "", "deploy_tools": False}


@dsl.pipeline(name="fathom-bootstrap",
              description="First run: base models from Hugging Face into object storage, the tool server, "
                          "the no-baseline record.")
def bootstrap_pipeline(
    base_models: dict = {"qwen3-4b": "Qwen/Qwen3-4B"},  # noqa: B006 - KFP reads the default
    models_uri: str = "s3://fathom/models/base",
    baseline_uri: str = "s3://fathom/retrain/deployed-eval",
    deploy_tools: bool = True,
    namespace: str = "fathom",
    deploy_config: dict = {},  # noqa: B006
):
    """`base_models`: {name: Hugging Face repo id[@revision]} → `<models_uri>/<name>` (the retrain profiles read
    `s3://fathom/models/base/qwen3-4b`; the smoke profile `.../smollm2-135m`). `baseline_uri`: the retrain's
    baseline (default `<output_uri>/deployed-eval`). `deploy_config`: a DeployConfig (tool server settings)."""
    seed = seed_base_models(models=base_models, models_uri=models_uri)
    seed.set_display_name("seed base models").set_caching_options(False).set_retry(num_retries=3)
    seed.set_cpu_limit("2").set_memory_limit("4G")
    with_secrets(seed, S3)
    nob = record_no_baseline(baseline_uri=baseline_uri)
    nob.set_display_name("record no baseline").set_caching_options(False).set_retry(num_retries=3)
    with_secrets(nob, S3)
    with dsl.If(deploy_tools == True, name="tool-server"):  # noqa: E712 - a KFP condition
        tools = deploy_tool_server(deploy_config=deploy_config, namespace=namespace)
        tools.set_display_name("deploy tool server").set_caching_options(False).set_retry(num_retries=2)


PIPELINE = bootstrap_pipeline
