"""KFP components of the bootstrap pipeline (thin wrappers over `fathom.bootstrap`). No `from __future__ import
annotations` here: KFP reads the real annotation objects."""

from kfp import dsl
from kfp.dsl import Markdown, Output

from components.base import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def seed_base_models(models: dict, models_uri: str, report: Output[Markdown]) -> str:
    """Copy Hugging Face model repositories ({name: org/name[@revision]}) to `<models_uri>/<name>`; models already
    there are kept. Returns {name: seeded | present} as JSON."""
    import json

    from fathom.bootstrap import seed_base_models as seed

    done = seed(dict(models), models_uri)
    with open(report.path, "w") as f:
        f.write("# Base models\n\n" + "\n".join(f"- {n}: {s} at {models_uri.rstrip('/')}/{n}" for n, s in done.items()))
    return json.dumps(done)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def record_no_baseline(baseline_uri: str) -> str:
    """The first retrain's gate reads "no baseline" here (kept if a baseline exists). recorded | present | skipped."""
    from fathom.bootstrap import record_no_baseline as record

    return record(baseline_uri)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def deploy_tool_server(deploy_config: dict, namespace: str) -> str:
    """Apply the tool server (Deployment, Service, HPA, NetworkPolicy) in `namespace`."""
    import json

    from fathom.bootstrap import deploy_tool_server as deploy

    return json.dumps(deploy(dict(deploy_config), namespace=namespace))
