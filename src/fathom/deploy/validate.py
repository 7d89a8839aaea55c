"""Offline validation of manifests (no API server): what the cluster would check, layer by layer.

Problems are reported as ``"<Kind>/<name>: <layer>: <json path>: <message>"`` strings:

1. **Typed models** — objects of a kind in :data:`KINDS` are walked against the typed model of the KServe SDK /
   kubernetes client: unknown fields with a "did you mean" hint, wrong JSON types, missing required fields.
2. **Schema** — KServe kinds against the ``openAPIV3Schema`` of the vendored CRDs of the pinned release
   (``crds/kserve-v0.20.0``, see its README; ``x-kubernetes-int-or-string`` = string or integer; unknown fields are
   errors, as with kubectl's default strict field validation); every other kind with ``kubernetes-validate
   --strict`` at :data:`K8S_VERSION`. A kind with no schema is an error, never a skip.
3. **Admission rules** — KServe's validating webhooks, ported in :mod:`fathom.deploy.webhook` (each citing its
   upstream file), and the release rules below (cross-object checks no schema knows: runtimes exist, GPU limits,
   nested RoPE overrides, YaRN context, probes vs. progress deadline, a restricted tool-server pod).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from fathom.errors import ConfigError

CRD_RELEASE = "kserve-v0.20.0"
CRD_DIR = Path(__file__).parent / "crds" / CRD_RELEASE
K8S_VERSION = "1.32.0"  # kubernetes-validate schema set (kubectl on the build machines is v1.32)
KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ClusterServingRuntime",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "Secret"): "V1Secret",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("batch/v1", "CronJob"): "V1CronJob",
}
CRD_FILES = {"InferenceService": "inferenceservices.yaml", "ServingRuntime": "servingruntimes.yaml",
             "ClusterServingRuntime": "clusterservingruntimes.yaml"}
KSERVE_GROUP = "serving.kserve.io/"
# Attributes the Kubernetes API types as IntOrString / Quantity although the Python client says str or object.
INT_OR_STRING = {"port", "target_port", "max_surge", "max_unavailable", "min_available", "limits", "requests",
                 "size_limit", "capacity"}
READ_ONLY = {"status"}  # server-written; never in a manifest we send


# ------------------------------------------------------------------------------------------------ typed models
@cache
def _model_class(name: str):
    from fathom.deploy.kserve_sdk import kserve_sdk

    kserve_sdk()
    import kserve.models
    import kubernetes.client.models as k8s

    cls = getattr(kserve.models, name, None) if name.startswith(("V1beta1", "V1alpha1")) else None
    cls = cls or getattr(k8s, name, None)
    if cls is None:
        raise ConfigError(f"no typed model named {name}")
    return cls


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_scalar(value, type_name: str, path: str, attr: str, errors: list[str]) -> None:
    if attr in INT_OR_STRING and (isinstance(value, str) or _is_int(value)):
        return
    ok = {
        "str": isinstance(value, str),
        "int": _is_int(value),
        "float": _is_int(value) or isinstance(value, float),
        "bool": isinstance(value, bool),
        "object": True,
        "datetime": isinstance(value, (str, datetime)),
        "date": isinstance(value, str),
    }.get(type_name)
    if ok is None:
        errors.append(f"{path}: unsupported type {type_name}")
    elif not ok:
        errors.append(f"{path}: expected {type_name}, got {type(value).__name__} {value!r}")


def _walk(value: Any, type_name: str, path: str, attr: str, errors: list[str]):
    """Check `value` against a typed-model type string; return the built Python value (or None on errors)."""
    if value is None:
        return None
    if type_name.startswith("list["):
        inner = type_name[5:-1]
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return None
        return [_walk(v, inner, f"{path}[{i}]", attr, errors) for i, v in enumerate(value)]
    if type_name.startswith("dict("):
        inner = type_name[type_name.index(",") + 1:-1].strip()
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return None
        return {k: _walk(v, inner, f"{path}.{k}", attr, errors) for k, v in value.items()}
    if type_name in ("str", "int", "float", "bool", "object", "datetime", "date"):
        _check_scalar(value, type_name, path, attr, errors)
        return value
    cls = _model_class(type_name)
    if not isinstance(value, dict):
        errors.append(f"{path}: expected an object ({type_name}), got {type(value).__name__}")
        return None
    json_to_attr = {j: a for a, j in cls.attribute_map.items()}
    kwargs = {}
    for key, sub in value.items():
        name = json_to_attr.get(key)
        if name is None:
            hint = _close(key, list(json_to_attr))
            errors.append(f"{path}.{key}: unknown field of {type_name}" + (f" (did you mean {hint}?)" if hint else ""))
            continue
        kwargs[name] = _walk(sub, cls.openapi_types[name], f"{path}.{key}", name, errors)
    try:  # setters enforce required fields and enums (client-side validation)
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        errors.append(f"{path}: {type_name}: {exc}")
        return None


def _close(key: str, options: list[str]) -> str | None:
    import difflib

    lowered = {o.lower(): o for o in options}
    match = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.75)
    return lowered[match[0]] if match else None


def validate_typed(obj: dict[str, Any]) -> list[str]:
    """Layer 1: check one object against the typed model of its apiVersion/kind."""
    kind, api = obj.get("kind"), obj.get("apiVersion")
    type_name = KINDS.get((api, kind))
    if type_name is None:
        return []  # no typed model: the schema layer (CRD or kubernetes-validate) still checks it
    errors: list[str] = []
    if not (obj.get("metadata") or {}).get("name"):
        errors.append("$.metadata.name: required")
    for key in READ_ONLY & set(obj):
        errors.append(f"$.{key}: read-only field in a manifest")
    _walk({k: v for k, v in obj.items() if k not in READ_ONLY}, type_name, "$", "", errors)
    return errors


# ------------------------------------------------------------------------------------------------ CRD schema
def crd_schema_to_jsonschema(schema: dict[str, Any]) -> dict[str, Any]:
    """Turn a CRD openAPIV3Schema into plain JSON schema: `x-kubernetes-int-or-string` → string or integer."""
    if isinstance(schema, list):
        return [crd_schema_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: crd_schema_to_jsonschema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False  # unknown fields are errors (kubectl's strict field validation)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.pop("anyOf", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


@cache
def _read_crd_file(path: Path) -> dict[str, Any]:
    import yaml

    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@cache
def load_crd_schema(kind: str, crd_dir: Path = CRD_DIR) -> dict[str, Any] | None:
    """The vendored JSON schema of `kind` (file: a whole CRD — its storage version is used —, a `versions[].schema`
    or a bare openAPIV3Schema; YAML or JSON), or None when no file of that kind is vendored."""
    name = CRD_FILES.get(kind)
    if not name or not (Path(crd_dir) / name).exists():
        return None
    data = _read_crd_file(Path(crd_dir) / name)
    if "spec" in data and "versions" in data["spec"]:  # a whole CRD: take the served storage version
        versions = data["spec"]["versions"]
        version = next((v for v in versions if v.get("storage")), versions[0])
        data = version["schema"]["openAPIV3Schema"]
    elif "openAPIV3Schema" in data:
        data = data["openAPIV3Schema"]
    return crd_schema_to_jsonschema(data)


def validate_schema(obj: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Layer 2: jsonschema validation, errors with JSON paths."""
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    return [f"{e.json_path}: {e.message}" for e in sorted(validator.iter_errors(obj), key=lambda e: e.json_path)]


# ------------------------------------------------------------------------------------------------ release rules
def _containers(obj: dict) -> list[dict]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "ServingRuntime":
        return spec.get("containers") or []
    if obj.get("kind") == "Deployment":
        return ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return []


def _flag(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


PRIVATE_V4 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8"]
METADATA_IP = "169.254.169.254"
STANDARD_PROGRESS_DEADLINE_S = 600  # KServe deployment_reconciler.go sets progressDeadlineSeconds=600 (Standard mode)
KNATIVE_PROGRESS_DEADLINE_S = 600  # Knative config-deployment progress-deadline default
PROGRESS_DEADLINE = "serving.knative.dev/progress-deadline"


def _seconds(text: str) -> int | None:
    """Knative durations as used in annotations: `900s`, `15m`, `1h`."""
    m = re.fullmatch(r"(\d+)([smh])", str(text).strip())
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)] if m else None


def startup_window_s(container: dict) -> int | None:
    """Longest time the startup probe lets a container start (initial delay + period × failures)."""
    p = container.get("startupProbe")
    if not p:
        return None
    return p.get("initialDelaySeconds", 0) + p.get("periodSeconds", 10) * p.get("failureThreshold", 3)


def progress_deadline_s(isvc: dict) -> int:
    """The deadline within which the predictor must become ready, by deployment mode."""
    from fathom.deploy.webhook import normalized_mode

    if normalized_mode(isvc) == "Knative":
        value = ((isvc.get("metadata") or {}).get("annotations") or {}).get(PROGRESS_DEADLINE)
        return _seconds(value) or KNATIVE_PROGRESS_DEADLINE_S if value else KNATIVE_PROGRESS_DEADLINE_S
    return STANDARD_PROGRESS_DEADLINE_S


def yarn_context(override: dict) -> int | None:
    """original_max_position_embeddings × factor of a nested YaRN override, or None without one."""
    rs = override.get("rope_scaling") or override.get("rope_parameters") or {}
    if rs.get("rope_type") != "yarn" or not rs.get("original_max_position_embeddings"):
        return None
    return int(rs["original_max_position_embeddings"] * float(rs.get("factor", 1.0)))


def _isvc_rules(o: dict, runtimes: dict[str, dict]) -> list[str]:
    from fathom.convert.rope import check_rope_override

    errors = []
    pred = (o.get("spec") or {}).get("predictor") or {}
    model = pred.get("model") or {}
    if model.get("runtime") and runtimes and model["runtime"] not in runtimes:
        errors.append(f"runtime {model['runtime']!r} is not among the rendered runtimes {sorted(runtimes)}")
    uri = model.get("storageUri") or ""
    if not re.match(r"^(s3|gs|pvc|hf|https?)://", uri):
        errors.append(f"storageUri {uri!r} is not a URI")
    if uri.startswith("s3://") and not pred.get("serviceAccountName"):
        errors.append("s3:// storage needs serviceAccountName (S3 credentials)")
    limits = (model.get("resources") or {}).get("limits") or {}
    if not any("gpu" in k for k in limits):
        errors.append("no GPU limit")
    if not pred.get("timeout"):
        errors.append("no predictor timeout (spec.predictor.timeout): long generations hit the platform default")
    args = model.get("args") or []
    max_len = _flag(args, "--max-model-len") or _flag(args, "--context-length")
    if not max_len:
        errors.append("no --max-model-len / --context-length")
    for flag in ("--hf-overrides", "--json-model-override-args"):
        value = _flag(args, flag)
        if value is None:
            continue
        try:
            check_rope_override(value)
        except (ConfigError, ValueError) as exc:
            errors.append(f"{flag}: {exc}")
            continue
        ctx = yarn_context(json.loads(value))
        if ctx and max_len and int(max_len) > ctx:
            errors.append(f"context {max_len} exceeds the YaRN context original×factor = {ctx}: positions past it "
                          "are extrapolated")
    runtime = runtimes.get(model.get("runtime") or "")
    containers = [model] + ((runtime or {}).get("spec") or {}).get("containers", [])[:1]
    window = next((w for w in map(startup_window_s, containers) if w is not None), None)
    deadline = progress_deadline_s(o)
    if window is not None and window > deadline:
        errors.append(f"startup probe allows {window}s, more than the progress deadline {deadline}s of this "
                      f"deployment mode: the rollout is declared failed while the model still loads")
    return errors


def _restricted_pod_rules(o: dict) -> list[str]:
    """Pod Security Standard "restricted" (+ no service-account token) for the pod template of a Deployment."""
    errors = []
    pod = ((o.get("spec") or {}).get("template") or {}).get("spec") or {}
    psc = pod.get("securityContext") or {}
    if pod.get("automountServiceAccountToken") is not False:
        errors.append("automountServiceAccountToken must be false (the pod never calls the Kubernetes API)")
    for c in pod.get("containers") or []:
        sc = c.get("securityContext") or {}
        name = c.get("name")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            errors.append(f"container {name}: seccompProfile must be RuntimeDefault (Pod Security restricted)")
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            errors.append(f"container {name}: runAsNonRoot must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"container {name}: allowPrivilegeEscalation must be false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            errors.append(f"container {name}: capabilities must drop ALL")
        if sc.get("readOnlyRootFilesystem") is not True:
            errors.append(f"container {name}: readOnlyRootFilesystem must be true")
    return errors


def _netpol_rules(o: dict) -> list[str]:
    """Egress to 0.0.0.0/0 must except the private ranges and the cloud metadata address."""
    import ipaddress

    errors = []
    for rule in (o.get("spec") or {}).get("egress") or []:
        for peer in rule.get("to") or []:
            block = peer.get("ipBlock")
            if not block or ipaddress.ip_network(block["cidr"]).prefixlen != 0:
                continue
            excepts = [ipaddress.ip_network(e) for e in block.get("except") or []]
            if block["cidr"].count(".") == 3:
                for needed in PRIVATE_V4:
                    if not any(ipaddress.ip_network(needed).subnet_of(e) for e in excepts if e.version == 4):
                        errors.append(f"egress to {block['cidr']} must except {needed}")
            if ipaddress.ip_address(METADATA_IP).version == 4 and block["cidr"].count(".") == 3 and not any(
                    ipaddress.ip_address(METADATA_IP) in e for e in excepts):
                errors.append(f"egress to {block['cidr']} reaches the metadata address {METADATA_IP}")
    return errors


def release_rules(objs: list[dict[str, Any]]) -> list[str]:
    """Layer 3b: cross-object checks of a release (KServe's own webhook rules are in fathom.deploy.webhook)."""
    errors: list[str] = []
    runtimes = {o["metadata"]["name"]: o for o in objs if o.get("kind") in ("ServingRuntime", "ClusterServingRuntime")}
    hpa_targets = {((o.get("spec") or {}).get("scaleTargetRef") or {}).get("name")
                   for o in objs if o.get("kind") == "HorizontalPodAutoscaler"}
    for o in objs:
        kind, name = o.get("kind"), (o.get("metadata") or {}).get("name")
        where = f"{kind}/{name}"
        rule_errors: list[str] = []
        if kind == "InferenceService":
            rule_errors += _isvc_rules(o, runtimes)
        if kind == "NetworkPolicy":
            rule_errors += _netpol_rules(o)
        if kind == "Deployment" and name in hpa_targets and "replicas" in (o.get("spec") or {}):
            rule_errors.append("spec.replicas is set although an HPA scales this Deployment: every apply resets it")
        if kind == "Deployment" and ((o.get("metadata") or {}).get("labels") or {}).get(
                "fathom.ai/pod-security") == "restricted":
            rule_errors += _restricted_pod_rules(o)
        for c in _containers(o):
            if not c.get("readinessProbe"):
                rule_errors.append(f"container {c.get('name')} has no readinessProbe")
            probe_path = (c.get("readinessProbe") or {}).get("httpGet", {}).get("path")
            if kind == "Deployment" and c.get("name") == "tools" and probe_path != "/healthz":
                rule_errors.append("readinessProbe must GET /healthz")
            for env in c.get("env") or []:
                if env["name"].endswith(("_API_KEY", "_SECRET_KEY")) and "valueFrom" not in env:
                    rule_errors.append(f"{env['name']} must come from a Secret, not a literal value")
        errors += [f"{where}: release: {e}" for e in rule_errors]
    return errors


# ------------------------------------------------------------------------------------------------ all layers
def validate_builtin(obj: dict[str, Any], version: str = K8S_VERSION) -> list[str]:
    """Layer 2 for built-in kinds: `kubernetes-validate --strict` (bundled Kubernetes JSON schemas)."""
    from kubernetes_validate import utils as kv

    try:
        kv.validate(obj, version, strict=True)
    except kv.SchemaNotFoundError:
        return [(f"schema: no schema for {obj.get('apiVersion')}/{obj.get('kind')} in Kubernetes {version} "
                 "(not a built-in kind, and no vendored CRD)")]
    except kv.ValidationError as exc:
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path)
        return [f"schema: {path}: {exc.message}"]
    return []


def validate_object(obj: dict[str, Any], crd_dir: Path = CRD_DIR) -> list[str]:
    """Layers 1 and 2 for one object (no cross-object rules)."""
    errors = [f"typed: {e}" for e in validate_typed(obj)]
    if str(obj.get("apiVersion", "")).startswith(KSERVE_GROUP):
        schema = load_crd_schema(obj.get("kind", ""), Path(crd_dir))
        if schema is None:
            errors.append(f"crd: no CRD schema vendored for {obj.get('kind')} under {crd_dir}: cannot validate")
        else:
            errors += [f"crd: {e}" for e in validate_schema(obj, schema)]
    else:
        errors += validate_builtin(obj)
    return errors


def validate_objects(objs: list[dict[str, Any]], *, crd_dir: Path = CRD_DIR, rules: bool = True) -> list[str]:
    """All layers over a list of objects (one release); [] when valid."""
    from fathom.deploy.webhook import webhook_problems

    errors = []
    for o in objs:
        where = f"{o.get('kind')}/{(o.get('metadata') or {}).get('name')}"
        errors += [f"{where}: {e}" for e in validate_object(o, crd_dir)]
    if rules:
        errors += webhook_problems(objs) + release_rules(objs)
    return errors


def load_objects(paths: list[Path]) -> list[dict[str, Any]]:
    from fathom.deploy.manifests import load_yaml_objects

    return [o for p in paths for o in load_yaml_objects(p) if isinstance(o, dict) and "kind" in o]


def validate_dir(folder: str | Path) -> list[str]:
    """Validate every Kubernetes object (a YAML document with `kind`) under `folder` (recursively) as one release.
    Other YAML documents (a DeployConfig, a KFP recurring-run body, kustomization files) are left out."""
    paths = [p for p in sorted(Path(folder).rglob("*.yaml")) if p.name != "kustomization.yaml"]
    objs = load_objects(paths)
    if not objs:
        return [f"{folder}: no manifests found"]
    return validate_objects(objs)


class KustomizeError(ConfigError):
    """`kubectl kustomize` is missing or failed to build an overlay."""


def kustomize_build(folder: str | Path, kubectl: str = "kubectl") -> list[dict[str, Any]]:
    """The objects `kubectl kustomize FOLDER` builds (kubectl's built-in kustomize; no cluster needed)."""
    import shutil
    import subprocess

    import yaml

    exe = shutil.which(kubectl)
    if exe is None:
        raise KustomizeError(f"{kubectl} is not installed: `kubectl kustomize` builds the overlays (kubectl ≥ 1.14 "
                             "has kustomize built in)")
    out = subprocess.run([exe, "kustomize", str(folder)], capture_output=True, text=True, timeout=120, check=False)
    if out.returncode != 0:
        raise KustomizeError(f"kubectl kustomize {folder} failed: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def kustomizations(folder: str | Path) -> list[Path]:
    """The kustomize roots to validate under `folder`: the folder itself if it is one, else every overlay
    (`overlays/*`) and, when there are none, every folder holding a kustomization.yaml."""
    root = Path(folder)
    if (root / "kustomization.yaml").exists():
        return [root]
    overlays = sorted(p.parent for p in root.glob("overlays/*/kustomization.yaml"))
    return overlays or sorted(p.parent for p in root.rglob("kustomization.yaml"))


def validate_path(folder: str | Path) -> dict[str, list[str]]:
    """`fathom deploy validate`: each kustomize root under `folder` built and validated as one release, or — with no
    kustomization — every manifest under `folder`. Returns {what was validated: problems}."""
    roots = kustomizations(folder)
    if not roots:
        return {str(folder): validate_dir(folder)}
    results = {}
    for root in roots:
        try:
            objs = kustomize_build(root)
        except KustomizeError as exc:
            results[str(root)] = [str(exc)]
            continue
        results[str(root)] = validate_objects(objs) if objs else [f"{root}: the build is empty"]
    return results
