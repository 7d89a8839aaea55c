"""Offline validation of manifests (no API server, no kubectl).

Three layers, all reporting problems as ``"<file or kind/name>: <json path>: <message>"`` strings:

1. **Typed models** — every object is walked against the typed model of its kind (KServe SDK 0.21 models for
   InferenceService/ServingRuntime, the kubernetes client models for the rest): unknown fields (typos such as
   ``storageURI``), wrong JSON types and missing required fields are reported with their path. Fields the
   Kubernetes API types as IntOrString (ports, quantities, surge) accept a string or an integer.
2. **CRD schema** — when the CRD's ``openAPIV3Schema`` of the pinned KServe release is vendored under
   ``fathom/deploy/crds/<plural>.serving.kserve.io.json`` it is checked with jsonschema as well
   (``x-kubernetes-int-or-string`` = string or integer). None is vendored in this repository yet: the full CRDs
   (1 MB for InferenceService) could not be fetched here; see ``crds/README.md`` to add them.
3. **Release rules** — cross-object checks no schema knows: every InferenceService names a rendered runtime, has
   GPU limits, an ``s3://`` (or pvc/gs/hf) storage URI, a service account, and nested (never flat) RoPE overrides;
   runtimes have readiness probes; the tool server has /healthz probes and takes its keys from Secrets.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from fathom.errors import ConfigError

CRD_DIR = Path(__file__).parent / "crds"
KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
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
CRD_FILES = {"InferenceService": "inferenceservices.serving.kserve.io.json",
             "ServingRuntime": "servingruntimes.serving.kserve.io.json"}
# Attributes the Kubernetes API types as IntOrString / Quantity although the Python client says str or object.
INT_OR_STRING = {"port", "target_port", "max_surge", "max_unavailable", "min_available", "limits", "requests",
                 "size_limit", "capacity"}
READ_ONLY = {"status"}  # server-written; never in a manifest we send


# ------------------------------------------------------------------------------------------------ typed models
@cache
def _model_class(name: str):
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
        return [f"$: unsupported apiVersion/kind {api}/{kind} (known: {sorted(k for _, k in KINDS)})"]
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
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.pop("anyOf", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


def load_crd_schema(kind: str, crd_dir: Path = CRD_DIR) -> dict[str, Any] | None:
    """The vendored schema of `kind` (a JSON file: a CRD, a `versions[].schema` or a bare openAPIV3Schema)."""
    name = CRD_FILES.get(kind)
    if not name or not (crd_dir / name).exists():
        return None
    data = json.loads((crd_dir / name).read_text())
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


def release_rules(objs: list[dict[str, Any]]) -> list[str]:
    """Layer 3: cross-object checks of a release."""
    from fathom.convert.rope import check_rope_override

    errors: list[str] = []
    runtimes = {o["metadata"]["name"] for o in objs if o.get("kind") == "ServingRuntime"}
    for o in objs:
        kind, name = o.get("kind"), (o.get("metadata") or {}).get("name")
        where = f"{kind}/{name}"
        if kind == "InferenceService":
            pred = (o.get("spec") or {}).get("predictor") or {}
            model = pred.get("model") or {}
            if model.get("runtime") and runtimes and model["runtime"] not in runtimes:
                errors.append(f"{where}: runtime {model['runtime']!r} is not among the rendered runtimes {sorted(runtimes)}")
            if not re.match(r"^(s3|gs|pvc|hf|https?)://", model.get("storageUri") or ""):
                errors.append(f"{where}: storageUri {model.get('storageUri')!r} is not a URI")
            if (model.get("storageUri") or "").startswith("s3://") and not pred.get("serviceAccountName"):
                errors.append(f"{where}: s3:// storage needs serviceAccountName (S3 credentials)")
            limits = (model.get("resources") or {}).get("limits") or {}
            if not any("gpu" in k for k in limits):
                errors.append(f"{where}: no GPU limit")
            args = model.get("args") or []
            if not (_flag(args, "--max-model-len") or _flag(args, "--context-length")):
                errors.append(f"{where}: no --max-model-len / --context-length")
            for flag in ("--hf-overrides", "--json-model-override-args"):
                value = _flag(args, flag)
                if value is not None:
                    try:
                        check_rope_override(value)
                    except (ConfigError, ValueError) as exc:
                        errors.append(f"{where}: {flag}: {exc}")
        for c in _containers(o):
            if not c.get("readinessProbe"):
                errors.append(f"{where}: container {c.get('name')} has no readinessProbe")
            if kind == "Deployment":
                if (c.get("readinessProbe") or {}).get("httpGet", {}).get("path") != "/healthz":
                    errors.append(f"{where}: readinessProbe must GET /healthz")
                for env in c.get("env") or []:
                    if env["name"].endswith("_API_KEY") and "valueFrom" not in env:
                        errors.append(f"{where}: {env['name']} must come from a Secret, not a literal value")
    return errors


def validate_objects(objs: list[dict[str, Any]], *, crd_dir: Path = CRD_DIR, rules: bool = True) -> list[str]:
    """All layers over a list of objects; [] when valid."""
    errors = []
    for o in objs:
        where = f"{o.get('kind')}/{(o.get('metadata') or {}).get('name')}"
        errors += [f"{where}: {e}" for e in validate_typed(o)]
        schema = load_crd_schema(o.get("kind", ""), crd_dir)
        if schema is not None:
            errors += [f"{where}: crd: {e}" for e in validate_schema(o, schema)]
    if rules:
        errors += release_rules(objs)
    return errors


def validate_dir(folder: str | Path) -> list[str]:
    """Validate every Kubernetes object (a YAML document with `kind`) under `folder` (recursively) as one release.
    Other YAML documents (a DeployConfig, a KFP recurring-run body) are not Kubernetes objects and are left out."""
    from fathom.deploy.manifests import load_yaml_objects

    objs = []
    for path in sorted(Path(folder).rglob("*.yaml")):
        objs += [o for o in load_yaml_objects(path) if isinstance(o, dict) and "kind" in o]
    if not objs:
        return [f"{folder}: no manifests found"]
    return validate_objects(objs)
