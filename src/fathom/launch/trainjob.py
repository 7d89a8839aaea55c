"""Kubeflow Trainer v2 (`trainer.kubeflow.org/v1alpha1`) TrainJobs for the GPU training steps.

* :func:`render_trainjob` — the TrainJob object (pure): `num_nodes` × `gpus_per_node` of the project's trainer image
  running :mod:`fathom.launch.node` (stage in → `accelerate launch`/`torchrun` of `fathom train ...` → node 0
  publishes), on a ClusterTrainingRuntime (`torch-distributed`), with the GPU pool's node selector, tolerations,
  /dev/shm and Secrets as env through a runtime patch.
* :func:`validate_trainjob` — against the ``openAPIV3Schema`` of the vendored Trainer v2.3.0 CRD (``crds/``).
* :func:`run_trainjob` — submits through the Kubeflow SDK (``kubeflow.trainer.TrainerClient``,
  ``CustomTrainerContainer`` + options; the request equals :func:`render_trainjob`, pinned by a test), streams node
  0's log, waits for Complete/Failed, raises :class:`TrainJobFailed` with the job's condition message and the log
  tail, and deletes the job on the way out. :func:`delete_run_trainjobs` is the pipeline exit handler's half.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import re
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from fathom.errors import ConfigError, FathomError
from fathom.launch.config import LaunchConfig

log = logging.getLogger(__name__)

CRD_RELEASE = "kubeflow-trainer-v2.3.0"
CRD_DIR = Path(__file__).parent / "crds" / CRD_RELEASE
GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
API_VERSION = f"{GROUP}/{VERSION}"
SDK_MANAGER = "trainer.kubeflow.org/kubeflow-sdk"  # the runtimePatches manager the SDK writes
RUN_LABEL = "fathom.ai/run-id"
STEP_LABEL = "fathom.ai/step"
CONTAINER = "node"  # the trainer container of the torch/DeepSpeed runtimes
SHM_VOLUME = "dshm"
WORK_VOLUME = "work"
WORK_MOUNT = "/workspace"


class TrainJobFailed(FathomError):
    """A TrainJob ended Failed: `message` is its Failed condition's message, `logs` the tail of node 0's log."""

    def __init__(self, name: str, message: str, logs: list[str] | None = None):
        self.name, self.message, self.logs = name, message, list(logs or [])
        tail = "\n".join(self.logs[-20:])
        super().__init__(f"TrainJob {name} failed: {message}" + (f"\n--- last log lines ---\n{tail}" if tail else ""))


def trainjob_name(step: str, run_id: str = "", salt: str = "") -> str:
    """A DNS-1035 name, stable for one (step, run): a retried task finds its own job instead of starting another."""
    base = re.sub(r"[^a-z0-9-]", "-", f"fathom-{step}".lower()).strip("-")[:40].rstrip("-")
    digest = hashlib.sha256(f"{run_id}|{step}|{salt}".encode()).hexdigest()[:10]
    return f"{base}-{digest}"


def _env_from_secrets(cfg: LaunchConfig) -> list[dict]:
    env = []
    for secret, mapping in sorted(cfg.secrets.items()):
        for key, var in sorted(mapping.items()):
            ref: dict[str, Any] = {"name": secret, "key": key}
            if secret in cfg.optional_secrets:
                ref["optional"] = True
            env.append({"name": var, "valueFrom": {"secretKeyRef": ref}})
    return env


def _pod_patch(cfg: LaunchConfig) -> dict[str, Any]:
    """The runtime patch of the trainer pods (what the SDK's `RuntimePatch` renders)."""
    volumes: list[dict] = [{"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": cfg.shm_size}}]
    mounts: list[dict] = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]
    if cfg.work_pvc:
        volumes.append({"name": WORK_VOLUME, "persistentVolumeClaim": {"claimName": cfg.work_pvc}})
        mounts.append({"name": WORK_VOLUME, "mountPath": WORK_MOUNT})
    container: dict[str, Any] = {"name": CONTAINER}
    if env := _env_from_secrets(cfg):
        container["env"] = env
    container["volumeMounts"] = mounts
    spec: dict[str, Any] = {}
    if cfg.service_account:
        spec["serviceAccountName"] = cfg.service_account
    spec["volumes"] = volumes
    spec["containers"] = [container]
    if cfg.node_selector:
        spec["nodeSelector"] = dict(cfg.node_selector)
    if cfg.tolerations:
        spec["tolerations"] = [dict(t) for t in cfg.tolerations]
    return {"name": CONTAINER, "template": {"spec": {"template": {"spec": spec}}}}


def _resources(cfg: LaunchConfig) -> dict[str, Any]:
    res: dict[str, Any] = {"cpu": cfg.cpu_per_node, "memory": cfg.memory_per_node}
    if cfg.gpus_per_node:
        res["nvidia.com/gpu"] = cfg.gpus_per_node
    return {"limits": res, "requests": dict(res)}


def render_trainjob(cfg: LaunchConfig, name: str, command: list[str], *, step: str = "train",
                    env: dict[str, str] | None = None) -> dict[str, Any]:
    """The TrainJob the API server receives for `command` (the node's container command)."""
    trainer: dict[str, Any] = {"command": list(command), "env": [{"name": k, "value": v}
                                                                  for k, v in (env or {}).items()],
                               "image": cfg.trainer_image(), "numNodes": cfg.num_nodes,
                               "resourcesPerNode": _resources(cfg)}
    if not trainer["env"]:
        del trainer["env"]
    labels = {STEP_LABEL: re.sub(r"[^A-Za-z0-9_.-]", "-", step)[:63]}
    if cfg.run_id:
        labels[RUN_LABEL] = re.sub(r"[^A-Za-z0-9_.-]", "-", cfg.run_id)[:63]
    return {
        "apiVersion": API_VERSION, "kind": "TrainJob",
        "metadata": {"labels": labels, "name": name},
        "spec": {"runtimePatches": [{"manager": SDK_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {
                     "replicatedJobs": [_pod_patch(cfg)]}}}}],
                 "runtimeRef": {"kind": "ClusterTrainingRuntime", "name": cfg.runtime},
                 "trainer": trainer},
    }


# ------------------------------------------------------------------------------------------------ validation
CRD_FILES = {"TrainJob": "trainer.kubeflow.org_trainjobs.yaml",
             "TrainingRuntime": "trainer.kubeflow.org_trainingruntimes.yaml",
             "ClusterTrainingRuntime": "trainer.kubeflow.org_clustertrainingruntimes.yaml"}


@cache
def trainer_schema(kind: str = "TrainJob") -> dict[str, Any]:
    """The JSON schema of a vendored Trainer CRD (its storage version; unknown fields are errors)."""
    from fathom.deploy.validate import _read_crd_file, crd_schema_to_jsonschema

    data = _read_crd_file(CRD_DIR / CRD_FILES[kind])
    versions = data["spec"]["versions"]
    version = next((v for v in versions if v.get("storage")), versions[0])
    return crd_schema_to_jsonschema(version["schema"]["openAPIV3Schema"])


def validate_trainjob(obj: dict[str, Any]) -> list[str]:
    """Problems of a TrainJob (or a Trainer runtime) against the vendored v2.3.0 CRD schema; [] = valid. Also the
    rules the schema cannot say: a DNS-1035 name of ≤ 63 characters, the trainer container patched by name."""
    from fathom.deploy.validate import validate_schema

    kind = obj.get("kind", "")
    if kind not in CRD_FILES or obj.get("apiVersion") != API_VERSION:
        return [f"$: not a Trainer {VERSION} kind: {obj.get('apiVersion')}/{kind}"]
    errors = validate_schema({k: v for k, v in obj.items() if k != "status"}, trainer_schema(kind))
    name = (obj.get("metadata") or {}).get("name", "")
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name or ""):
        errors.append(f"$.metadata.name: {name!r} is not a DNS-1035 label of at most 63 characters")
    return errors


# ------------------------------------------------------------------------------------------------ submission
def trainer_client(namespace: str = "", client_configuration=None, config_file: str | None = None):
    """A Kubeflow SDK TrainerClient on the Kubernetes backend (in-cluster, a kubeconfig file, or the given
    `kubernetes.client.Configuration`)."""
    try:
        from kubeflow.trainer import KubernetesBackendConfig, TrainerClient
    except ImportError as exc:  # pragma: no cover - depends on the image
        raise ConfigError("launcher=trainjob needs the Kubeflow SDK: pip install 'kubeflow==0.5.*'") from exc
    return TrainerClient(backend_config=KubernetesBackendConfig(namespace=namespace or _pod_namespace(),
                                                                client_configuration=client_configuration,
                                                                config_file=config_file or None))


def _pod_namespace() -> str:
    p = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return p.read_text().strip() if p.is_file() else "default"


def sdk_request(cfg: LaunchConfig, name: str, command: list[str], *, step: str = "train",
                env: dict[str, str] | None = None) -> tuple[Any, list]:
    """The SDK's (trainer, options) for :func:`render_trainjob`'s object."""
    from kubeflow.trainer import CustomTrainerContainer
    from kubeflow.trainer.options import Labels, Name, RuntimePatch, TrainerCommand
    from kubeflow.trainer.options.kubernetes import (
        ContainerPatch,
        JobSetSpecPatch,
        JobSetTemplatePatch,
        JobSpecPatch,
        JobTemplatePatch,
        PodSpecPatch,
        PodTemplatePatch,
        ReplicatedJobPatch,
        TrainingRuntimeSpecPatch,
    )

    obj = render_trainjob(cfg, name, command, step=step, env=env)
    pod = obj["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    ps = pod["template"]["spec"]["template"]["spec"]
    c = ps["containers"][0]
    res = {"cpu": cfg.cpu_per_node, "memory": cfg.memory_per_node}
    if cfg.gpus_per_node:
        res["gpu"] = cfg.gpus_per_node
    trainer = CustomTrainerContainer(image=cfg.trainer_image(), num_nodes=cfg.num_nodes, resources_per_node=res,
                                     env=dict(env) if env else None)
    patch = RuntimePatch(training_runtime_spec=TrainingRuntimeSpecPatch(template=JobSetTemplatePatch(
        spec=JobSetSpecPatch(replicated_jobs=[ReplicatedJobPatch(name=pod["name"], template=JobTemplatePatch(
            spec=JobSpecPatch(template=PodTemplatePatch(spec=PodSpecPatch(
                service_account_name=ps.get("serviceAccountName"), volumes=ps["volumes"],
                containers=[ContainerPatch(name=c["name"], env=c.get("env"), volume_mounts=c["volumeMounts"])],
                node_selector=ps.get("nodeSelector"), tolerations=ps.get("tolerations"))))))]))))
    options = [Name(name=name), Labels(labels=obj["metadata"]["labels"]), TrainerCommand(command=list(command)), patch]
    return trainer, options


def _job_object(client, name: str) -> dict[str, Any]:
    backend = client.backend
    return backend.custom_api.get_namespaced_custom_object(GROUP, VERSION, backend.namespace, PLURAL, name)


def _condition(obj: dict[str, Any], kind: str) -> dict | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return c
    return None


def submit(client, cfg: LaunchConfig, name: str, command: list[str], *, step: str = "train",
           env: dict[str, str] | None = None) -> str:
    """Create the TrainJob; a job of the same name (a retried task) is adopted while it runs or succeeded, and
    replaced when it failed."""
    from kubernetes.client.exceptions import ApiException

    try:
        obj = _job_object(client, name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        obj = None
    except RuntimeError:
        obj = None
    if obj is not None:
        if _condition(obj, "Failed") is None:
            log.info("TrainJob %s exists (a previous attempt): waiting on it", name)
            return name
        log.info("TrainJob %s failed in a previous attempt: replacing it", name)
        client.delete_job(name)
        _wait_gone(client, name, cfg.poll_s, timeout=300)
    trainer, options = sdk_request(cfg, name, command, step=step, env=env)
    return client.train(runtime=cfg.runtime, trainer=trainer, options=options)


def _wait_gone(client, name: str, poll_s: float, timeout: float) -> None:
    from kubernetes.client.exceptions import ApiException

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            _job_object(client, name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(min(poll_s, 2.0))
    raise TimeoutError(f"TrainJob {name} was not deleted within {timeout:.0f} s")


TRANSIENT_STATUS = {429, 500, 502, 503, 504}


def _transient(exc: BaseException) -> bool:
    """An API error worth retrying: throttling, a 5xx, a dropped connection (also when the SDK wraps it)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    for e in (exc, exc.__cause__):
        if isinstance(e, ApiException) and e.status in TRANSIENT_STATUS:
            return True
        if isinstance(e, Urllib3Error | ConnectionError | TimeoutError):
            return True
    return False


def _retry(fn: Callable[[], Any], what: str, *, attempts: int = 6, backoff_s: float = 1.0) -> Any:
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if i == attempts - 1 or not _transient(exc):
                raise
            log.warning("%s failed (%s); retrying", what, exc)
            time.sleep(backoff_s * 2 ** i)
    raise AssertionError("unreachable")


def wait(client, name: str, *, timeout_s: float, poll_s: float, on_log: Callable[[str], None] = print,
         tail: int = 200, retry_backoff_s: float = 1.0, drain_s: float = 30.0) -> dict[str, Any]:
    """Follow node 0's log (in a thread) while polling the job's status; return the final object when Complete,
    raise TrainJobFailed (condition message + log tail) when Failed, TimeoutError after `timeout_s` — also when
    the log stream hangs. Transient API errors (429, 5xx, dropped connections) are retried with backoff."""
    import threading

    lines: collections.deque[str] = collections.deque(maxlen=tail)
    follower: threading.Thread | None = None

    def follow() -> None:
        for _ in range(3):  # the log may not be readable yet, or the stream may drop: retry a few times
            if _collect_logs(client, name, lines, on_log, follow=True):
                return
            time.sleep(poll_s)

    def settle() -> None:
        """Let the log finish (the container has exited), or read it once if it was never followed."""
        if follower is not None:
            follower.join(timeout=drain_s)
        else:
            _collect_logs(client, name, lines, on_log, follow=False)

    end = time.monotonic() + timeout_s
    while True:
        obj = _retry(lambda: _job_object(client, name), f"get TrainJob {name}", backoff_s=retry_backoff_s)
        failed = _condition(obj, "Failed")
        if failed is not None:
            settle()
            raise TrainJobFailed(name, failed.get("message") or failed.get("reason") or "Failed", list(lines))
        if _condition(obj, "Complete") is not None:
            settle()
            return obj
        if follower is None:
            job = _retry(lambda: client.get_job(name), f"get TrainJob {name} pods", backoff_s=retry_backoff_s)
            if any(s.name == "node-0" and s.status not in (None, "Pending") for s in job.steps):
                follower = threading.Thread(target=follow, name=f"logs-{name}", daemon=True)
                follower.start()
        if time.monotonic() > end:
            raise TimeoutError(f"TrainJob {name} did not finish within {timeout_s:.0f} s")
        time.sleep(poll_s)


def _collect_logs(client, name: str, lines, on_log, *, follow: bool) -> bool:
    try:
        for line in client.get_job_logs(name, follow=follow):
            for part in str(line).splitlines() or [""]:
                lines.append(part)
                on_log(part)
        return True
    except RuntimeError as exc:  # the pod went away or its log is not readable: status still decides
        log.warning("logs of TrainJob %s: %s", name, exc)
        return False


def run_trainjob(cfg: LaunchConfig, command: list[str], *, step: str = "train", env: dict[str, str] | None = None,
                 client=None, on_log: Callable[[str], None] = print, name: str | None = None) -> dict[str, Any]:
    """Submit, stream, wait, delete (when `cfg.delete_on_exit`). Returns the final TrainJob object."""
    obj = render_trainjob(cfg, name or trainjob_name(step, cfg.run_id), command, step=step, env=env)
    problems = validate_trainjob(obj)
    if problems:
        raise ConfigError("the TrainJob does not validate against the Trainer CRD: " + "; ".join(problems))
    client = client or trainer_client(cfg.namespace, config_file=cfg.kubeconfig)
    job = obj["metadata"]["name"]
    submit(client, cfg, job, command, step=step, env=env)
    try:
        return wait(client, job, timeout_s=cfg.timeout_s, poll_s=cfg.poll_s, on_log=on_log,
                    retry_backoff_s=min(cfg.poll_s, 1.0))
    finally:
        if cfg.delete_on_exit:
            try:
                client.delete_job(job)
            except Exception as exc:  # noqa: BLE001 - the exit handler deletes what is left
                log.warning("could not delete TrainJob %s: %s", job, exc)


def delete_run_trainjobs(run_id: str, *, namespace: str = "", client=None, config_file: str = "") -> list[str]:
    """Delete every TrainJob labelled with this pipeline run (the exit handler). Returns the deleted names."""
    if not run_id:
        return []
    client = client or trainer_client(namespace, config_file=config_file)
    backend = client.backend
    selector = f"{RUN_LABEL}={re.sub(r'[^A-Za-z0-9_.-]', '-', run_id)[:63]}"
    items = backend.custom_api.list_namespaced_custom_object(GROUP, VERSION, backend.namespace, PLURAL,
                                                             label_selector=selector).get("items", [])
    names = [i["metadata"]["name"] for i in items]
    for n in names:
        client.delete_job(n)
    return names
