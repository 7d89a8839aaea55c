"""How a GPU training step runs: in the component's process, under `accelerate launch` on the pod's GPUs, or as a
Kubeflow Trainer v2 ``TrainJob`` spanning ``num_nodes`` × ``gpus_per_node``.

One config class (:class:`LaunchConfig`) whose field help strings are the documentation; a component receives it
as ``launcher`` (the mode) + ``launch_json`` (the other fields, JSON).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from fathom.errors import ConfigError

Launcher = Literal["inprocess", "accelerate", "trainjob"]
LAUNCHERS: tuple[str, ...] = ("inprocess", "accelerate", "trainjob")
CONFIG_DIR = Path(__file__).resolve().parents[1] / "rl" / "configs"


class LaunchConfig(BaseModel):
    """Where and how a training step (RAPO stage 1/2, warm start, synthesizer SFT) runs."""

    model_config = {"extra": "forbid"}

    launcher: Launcher = Field(default="inprocess", description=(
        "inprocess: the training function runs inside the component's Python process (CPU, the embedded default; "
        "one GPU at most). accelerate: `accelerate launch` on all GPUs of the component's pod (single node, no "
        "Kubeflow Trainer needed). trainjob: a Kubeflow Trainer v2 TrainJob of num_nodes × gpus_per_node, "
        "submitted through the Kubeflow SDK; the component waits, streams its logs and fails with its error."))
    accelerate_config: str = Field(default="zero3", description=(
        "The accelerate config of the launcher: a name of src/fathom/rl/configs/accelerate_<name>.yaml (zero2, zero3 "
        "= DeepSpeed ZeRO-2/3 with ds_zero*.json, fsdp, cpu_ddp) or a file path; '' = plain torchrun (DDP)."))
    num_processes: int = Field(default=0, ge=0, description=(
        "accelerate mode: processes to start (0 = every GPU the pod sees; CPU pods need an explicit number)."))
    num_nodes: int = Field(default=1, ge=1, description="trainjob mode: training nodes (pods).")
    gpus_per_node: int = Field(default=8, ge=0, description="trainjob mode: GPUs per node (resourcesPerNode).")
    cpu_per_node: str = Field(default="32", description="trainjob mode: CPU request/limit per node.")
    memory_per_node: str = Field(default="512Gi", description="trainjob mode: memory request/limit per node.")
    shm_size: str = Field(default="64Gi", description="trainjob mode: /dev/shm (a memory emptyDir) per node.")
    namespace: str = Field(default="", description="trainjob mode: namespace of the TrainJob ('' = the namespace "
                           "of the component's pod, else `default`).")
    kubeconfig: str = Field(default="", description="trainjob mode: a kubeconfig file for the Kubernetes API ('' = "
                            "the pod's service account in a cluster, else $KUBECONFIG / ~/.kube/config).")
    runtime: str = Field(default="torch-distributed", description=(
        "trainjob mode: the ClusterTrainingRuntime (Trainer v2.3 `torch-distributed`: torchrun env PET_* injected "
        "per node; DeepSpeed runs inside it through accelerate_config)."))
    image: str = Field(default="", description="trainjob mode: trainer image ('' = $FATHOM_TRAINJOB_IMAGE, else "
                       "the project's fathom-trainer image of this version).")
    node_selector: dict[str, str] = Field(default_factory=lambda: {
        os.environ.get("FATHOM_GPU_NODE_LABEL", "fathom.ai/pool"): os.environ.get("FATHOM_GPU_NODE_VALUE", "gpu")},
        description="trainjob mode: node selector of the training pods (the GPU node pool).")
    tolerations: list[dict] = Field(default_factory=lambda: [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        description="trainjob mode: tolerations of the training pods.")
    secrets: dict[str, dict[str, str]] = Field(default_factory=dict, description=(
        "trainjob mode: Kubernetes Secrets exposed as env in every training pod ({secret: {key: ENV_NAME}}), e.g. "
        "the object-store and role-key secrets the component itself gets."))
    optional_secrets: list[str] = Field(default_factory=list, description="Secrets of `secrets` that may be absent.")
    service_account: str = Field(default="", description="trainjob mode: service account of the training pods.")
    work_pvc: str = Field(default="", description=(
        "trainjob mode: a ReadWriteMany PVC mounted at /workspace on every node and used as the working folder, so "
        "that sharded checkpoints (ZeRO-3, multi-node) land in one place; '' = each node's local disk, node 0 "
        "mirrors the folder to checkpoint_uri (complete for ZeRO-2/DDP single-writer checkpoints)."))
    timeout_s: float = Field(default=7 * 24 * 3600.0, gt=0, description="trainjob mode: give up waiting after this.")
    poll_s: float = Field(default=10.0, gt=0, description="trainjob mode: status poll interval.")
    delete_on_exit: bool = Field(default=True, description="trainjob mode: delete the TrainJob when the component "
                                 "ends (the pipeline's exit handler also deletes the run's TrainJobs).")
    run_id: str = Field(default="", description="Label value `fathom.ai/run-id` of the TrainJob (the pipeline run "
                        "id), so the exit handler finds the run's jobs.")

    @classmethod
    def from_parameters(cls, launcher: str, launch_json: str = "") -> LaunchConfig:
        """The config of a component's `launcher` + `launch_json` parameters (bad input → a clear ConfigError)."""
        import json

        if launcher and launcher not in LAUNCHERS:
            raise ConfigError(f"launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
        try:
            extra = json.loads(launch_json or "{}")
        except json.JSONDecodeError as exc:
            raise ConfigError(f"launch_json is not JSON: {exc}") from exc
        if not isinstance(extra, dict):
            raise ConfigError("launch_json must be a JSON object of LaunchConfig fields")
        try:
            return cls(**{**extra, **({"launcher": launcher} if launcher else {})})
        except ValueError as exc:
            raise ConfigError(f"bad launch settings: {exc}") from exc

    def accelerate_config_file(self) -> Path | None:
        """The accelerate config file of `accelerate_config` (None = plain torchrun)."""
        if not self.accelerate_config:
            return None
        p = Path(self.accelerate_config)
        if p.suffix in (".yaml", ".yml"):
            if not p.is_file():
                raise ConfigError(f"accelerate config {p} does not exist")
            return p
        f = CONFIG_DIR / f"accelerate_{self.accelerate_config}.yaml"
        if not f.is_file():
            names = sorted(x.stem.removeprefix("accelerate_") for x in CONFIG_DIR.glob("accelerate_*.yaml"))
            raise ConfigError(f"no accelerate config named {self.accelerate_config!r} (have: {', '.join(names)})")
        return f

    def trainer_image(self) -> str:
        if self.image:
            return self.image
        from fathom import __version__

        return os.environ.get("FATHOM_TRAINJOB_IMAGE") or f"ghcr.io/fathom-pipelines/fathom-trainer:{__version__}"
