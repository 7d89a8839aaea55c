"""KFP component of the training launcher: the exit handler's half of the TrainJobs (fathom.launch.trainjob).

No `from __future__ import annotations` here: KFP reads the real annotation objects."""

from kfp import dsl

from components.base import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def release_trainjobs(launcher: str, launch_json: str, run_id: str) -> str:
    """Delete the Kubeflow Trainer TrainJobs this pipeline run created (label `fathom.ai/run-id`); a no-op unless
    `launcher` is `trainjob`. Returns the deleted names, comma-separated."""
    from fathom.launch.config import LaunchConfig

    cfg = LaunchConfig.from_parameters(launcher, launch_json)
    if cfg.launcher != "trainjob":
        return ""
    from fathom.launch.trainjob import delete_run_trainjobs

    return ",".join(delete_run_trainjobs(run_id, namespace=cfg.namespace, config_file=cfg.kubeconfig))
