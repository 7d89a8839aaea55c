"""Shared settings of every component: the pinned project images and the GPU node-pool placement."""

from __future__ import annotations

import os

# Images built from images/ (tag = project version). Override with FATHOM_IMAGE_* at compile time.
REGISTRY = os.environ.get("FATHOM_IMAGE_REGISTRY", "ghcr.io/fathom-pipelines").rstrip("/")
from fathom import __version__ as VERSION

DIGESTS_FILE = os.environ.get("FATHOM_IMAGE_DIGESTS",
                              os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "images",
                                           "digests.json"))


def pinned_image(name: str, default: str) -> str:
    """`name`'s `image@sha256:...` from the digests file scripts/build-images.sh --push writes, else `default`."""
    import json

    if os.path.exists(DIGESTS_FILE):
        with open(DIGESTS_FILE) as f:
            ref = json.load(f).get(name)
        if ref:
            return ref
    return default


CPU_IMAGE = os.environ.get("FATHOM_IMAGE_CPU") or pinned_image("fathom-cpu", f"{REGISTRY}/fathom-cpu:{VERSION}")
GPU_IMAGE = os.environ.get("FATHOM_IMAGE_GPU") or pinned_image("fathom-trainer",
                                                                f"{REGISTRY}/fathom-trainer:{VERSION}")

GPU_NODE_LABEL = os.environ.get("FATHOM_GPU_NODE_LABEL", "fathom.ai/pool")
GPU_NODE_VALUE = os.environ.get("FATHOM_GPU_NODE_VALUE", "gpu")
GPU_TYPE = os.environ.get("FATHOM_GPU_TYPE", "nvidia.com/gpu")


def on_gpu_pool(task, *, gpus: int = 1, memory: str = "64G", cpu: str = "8", secrets: dict[str, dict[str, str]] | None = None,
                shm_size: str = "16Gi"):
    """Place a task on the GPU node pool: accelerator, node selector, toleration, /dev/shm as a memory emptyDir,
    secrets as env. All of this compiles into the IR and is ignored by `kfp.local`."""
    from kfp import kubernetes

    task.set_accelerator_type(GPU_TYPE).set_accelerator_limit(gpus)
    task.set_cpu_limit(cpu).set_memory_limit(memory)
    kubernetes.add_node_selector(task, label_key=GPU_NODE_LABEL, label_value=GPU_NODE_VALUE)
    kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=shm_size)
    with_secrets(task, secrets)
    return task


#: Kubernetes Secret with the object-store credentials, exposed as FATHOM_S3_* to every task that reads or writes an
#: s3:// URI (ignored by `kfp.local`: there the environment of `fathom pipeline run` is inherited). Mounted
#: `optional`: on EKS with IRSA (web identity) the Secret may hold only the endpoint/region, or not exist at all;
#: the `validate` step reports what is missing.
S3_SECRET = os.environ.get("FATHOM_S3_SECRET_NAME", "fathom-s3")
S3_ENV = {"endpoint": "FATHOM_S3_ENDPOINT", "access_key": "FATHOM_S3_ACCESS_KEY", "secret_key": "FATHOM_S3_SECRET_KEY",
          "secure": "FATHOM_S3_SECURE", "region": "FATHOM_S3_REGION"}
#: Kubernetes Secret holding role API keys (judge, labeller, teacher, solvers) → the env vars the role strings name.
LLM_SECRET = os.environ.get("FATHOM_LLM_SECRET", "fathom-llm-keys")
LLM_ENV = {"openai-api-key": "OPENAI_API_KEY"}
SECRETS = {LLM_SECRET: LLM_ENV}
S3 = {S3_SECRET: S3_ENV}
ALL_SECRETS = {**SECRETS, **S3}
OPTIONAL_SECRETS = {S3_SECRET}


def with_secrets(task, secrets: dict[str, dict[str, str]] | None):
    """Expose Kubernetes Secrets as env vars ({secret_name: {key: ENV_NAME}})."""
    from kfp import kubernetes

    for secret_name, mapping in (secrets or {}).items():
        kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env=mapping,
                                     optional=secret_name in OPTIONAL_SECRETS)
    return task


def with_s3(task):
    """The object-store credentials as env (see `S3_SECRET`)."""
    return with_secrets(task, S3)


#: The working folder of the training steps (base-model download, checkpoints, TensorBoard) on a generic ephemeral
#: volume — a PVC created with the pod and deleted with it — instead of the node's unbounded ephemeral storage. A
#: retried pod gets a fresh volume and resumes from the checkpoints mirrored to object storage
#: (`fathom.checkpoints`). `kfp.local` ignores the volume; `components.artifacts.work_dir` then falls back to a
#: folder beside the output artifact.
WORK_DIR = "/fathom-work"
WORK_VOLUME_SIZE = os.environ.get("FATHOM_WORK_VOLUME_SIZE", "500Gi")
WORK_STORAGE_CLASS = os.environ.get("FATHOM_WORK_STORAGE_CLASS") or None


def with_work_volume(task, size: str = WORK_VOLUME_SIZE):
    """Mount the step's work volume at `WORK_DIR` and point FATHOM_WORK_DIR at it."""
    from kfp import kubernetes

    kubernetes.add_ephemeral_volume(task, volume_name="work", mount_path=WORK_DIR, access_modes=["ReadWriteOnce"],
                                    size=size, storage_class_name=WORK_STORAGE_CLASS)
    task.set_env_variable("FATHOM_WORK_DIR", WORK_DIR)
    return task
