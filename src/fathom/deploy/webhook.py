"""KServe's admission rules that apply to what fathom renders, ported from the validating webhooks of the pinned
release (kserve/kserve tag v0.20.0, the release of the vendored CRDs in ``crds/``).

A CRD schema says what the API server stores; these webhooks run after it and deny objects the schema allows
(``spec.predictor.model.name`` is the classic one). Each rule is a small pure function over a manifest dict that
returns problem strings; :data:`ISVC_RULES` / :data:`RUNTIME_RULES` list them with the upstream file they port, and
:func:`webhook_problems` runs them all. Only rules reachable from our manifests are ported (no transformer,
explainer, multi-node worker, confidential or multi-storage-URI rules: we never render those fields).

Deployment modes: KServe v0.20 calls them ``Standard`` (formerly ``RawDeployment``) and ``Knative`` (formerly
``Serverless``); the old names are still accepted and normalized (``pkg/constants/constants.go``,
``ParseDeploymentMode``). With no annotation the controller uses its configured default, ``Standard`` upstream.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

UPSTREAM = "kserve/kserve@v0.20.0"
ISVC_VALIDATION = "pkg/apis/serving/v1beta1/inference_service_validation.go"
COMPONENT = "pkg/apis/serving/v1beta1/component.go"
ENV_POLICY = "pkg/validation/env_policy.go"
RUNTIME_WEBHOOK = "pkg/webhook/admission/servingruntime/servingruntime_webhook.go"
CONSTANTS = "pkg/constants/constants.go"
KSVC_RECONCILER = "pkg/controller/v1beta1/inferenceservice/reconcilers/knative/ksvc_reconciler.go"

DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
KNATIVE_MODES = {"Knative", "Serverless"}
STANDARD_MODES = {"Standard", "RawDeployment"}
MODES = KNATIVE_MODES | STANDARD_MODES | {"ModelMesh"}
AUTOSCALER_CLASSES = {"hpa", "external", "none", "keda"}  # constants.AutoscalerAllowedClassList
BLOCKED_ENV = ("PYTHONPATH",)  # validation.DefaultBlockedEnvVars
ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # IsvcNameFmt
FRAMEWORKS = ("sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx", "huggingface", "pmml", "lightgbm",
              "paddle", "model")
DEFAULT_MODE = "Standard"  # constants.DefaultDeployment


def normalized_mode(isvc: dict[str, Any], default: str = DEFAULT_MODE) -> str:
    """`Standard` or `Knative` (or `ModelMesh`), as the controller reads the annotation."""
    mode = _annotations(isvc).get(DEPLOYMENT_MODE) or default
    return {"RawDeployment": "Standard", "Serverless": "Knative"}.get(mode, mode)


def _annotations(obj: dict) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _predictor(isvc: dict) -> dict:
    return (isvc.get("spec") or {}).get("predictor") or {}


def _predictor_containers(pred: dict) -> list[dict]:
    out = list(pred.get("containers") or []) + list(pred.get("initContainers") or [])
    out += [pred[f] for f in FRAMEWORKS if isinstance(pred.get(f), dict)]
    return out


# ------------------------------------------------------------------------------------------- InferenceService
def isvc_name(isvc: dict) -> list[str]:
    """validateInferenceServiceName: the name must match IsvcNameFmt (DNS-1035 without length)."""
    name = (isvc.get("metadata") or {}).get("name") or ""
    if not ISVC_NAME.match(name):
        return [f"the InferenceService {name!r} is invalid: a name must match {ISVC_NAME.pattern}"]
    return []


def standard_predictor_has_no_name(isvc: dict) -> list[str]:
    """validatePredictor: `name` inside a standard predictor (predictor.model, .sklearn, ...) is denied."""
    pred = _predictor(isvc)
    return [f"predictor.{f}.name: the 'name' field is not allowed in standard predictor"
            for f in FRAMEWORKS if isinstance(pred.get(f), dict) and pred[f].get("name")]


def blocked_env(isvc: dict) -> list[str]:
    """validateBlockedEnvVars (+ env_policy.go): PYTHONPATH may not be set in any predictor container."""
    out = []
    for c in _predictor_containers(_predictor(isvc)):
        for env in c.get("env") or []:
            if env.get("name") in BLOCKED_ENV:
                out.append(f"setting {env['name']} in container {c.get('name', '')!r} is not allowed for security "
                           "reasons")
    return out


def replicas(isvc: dict) -> list[str]:
    """ComponentExtensionSpec.Validate → validateReplicas: 0 ≤ minReplicas ≤ maxReplicas (maxReplicas 0 = unset)."""
    pred = _predictor(isvc)
    lo, hi = pred.get("minReplicas", 1), pred.get("maxReplicas", 0)
    if not all(isinstance(v, int) for v in (lo, hi) if v is not None):
        return []  # a type error: the schema layer reports it    if lo is not None and lo < 0:
        return ["minReplicas cannot be less than 0"]
    if hi is not None and hi < 0:
        return ["maxReplicas cannot be less than 0"]
    if hi and lo is not None and lo > hi:
        return ["minReplicas cannot be greater than maxReplicas"]
    return []


def deployment_mode_value(isvc: dict) -> list[str]:
    """constants.DeploymentModeType: the annotation must name a known mode (else the controller rejects it)."""
    mode = _annotations(isvc).get(DEPLOYMENT_MODE)
    if mode is not None and mode not in MODES:
        return [f"{DEPLOYMENT_MODE}={mode!r} is not one of {sorted(MODES)}"]
    return []


def autoscaler_class(isvc: dict) -> list[str]:
    """validateInferenceServiceAutoscaler: the autoscaler class annotation must be a supported class."""
    value = _annotations(isvc).get(AUTOSCALER_CLASS)
    if value is not None and value not in AUTOSCALER_CLASSES:
        return [f"[{value}] is not a supported autoscaler class type"]
    return []


def knative_has_no_deployment_strategy(isvc: dict) -> list[str]:
    """validateAutoScalingCompExtension → validateScalingKPACompExtension: in Knative mode a custom
    deploymentStrategy is denied ("only supported for raw deployment mode")."""
    if normalized_mode(isvc) != "Standard" and _predictor(isvc).get("deploymentStrategy"):
        return ["customizing deploymentStrategy is only supported for raw deployment mode"]
    return []


def canary_only_in_knative(isvc: dict) -> list[str]:
    """canaryTrafficPercent is read only by the Knative reconciler (ksvc_reconciler.go: it splits traffic between the
    last rolled-out and the new revision); a Standard deployment silently rolls out at 100 %. Not a webhook denial
    upstream: refused here so that a release never believes it is canaried when it is not."""
    if _predictor(isvc).get("canaryTrafficPercent") is not None and normalized_mode(isvc) != "Knative":
        return [(f"canaryTrafficPercent needs deployment mode Knative/Serverless (this one is "
                 f"{normalized_mode(isvc)}): Standard/RawDeployment ignores it and rolls out at 100%")]
    return []


def deployment_mode_unchanged(new: dict, live: dict | None) -> list[str]:
    """validateDeploymentMode (update only): the annotation may not differ from the live status.deploymentMode."""
    if not live:
        return []
    status_mode = (live.get("status") or {}).get("deploymentMode")
    if not status_mode:
        return []
    status_mode = {"RawDeployment": "Standard", "Serverless": "Knative"}.get(status_mode, status_mode)
    wanted = _annotations(new).get(DEPLOYMENT_MODE)
    if wanted is not None and wanted != status_mode:
        return [f"update rejected: deploymentMode cannot be changed from '{status_mode}' to '{wanted}'"]
    return []


# ---------------------------------------------------------------------------------------------- ServingRuntime
def _auto_formats(rt: dict) -> list[dict]:
    return [f for f in (rt.get("spec") or {}).get("supportedModelFormats") or [] if f.get("autoSelect")]


def runtime_priority_same_within(rt: dict) -> list[str]:
    """validateModelFormatPrioritySame: one runtime may not give the same auto-selected format two priorities."""
    seen: dict[str, Any] = {}
    for f in _auto_formats(rt):
        name, prio = f.get("name"), f.get("priority")
        if name in seen and seen[name] is not None and prio is not None and seen[name] != prio:
            return [f"different priorities assigned for the model format {name}"]
        seen.setdefault(name, prio)
    return []


def runtime_blocked_env(rt: dict) -> list[str]:
    """servingruntime_webhook validateBlockedEnvVars: PYTHONPATH may not be set in a runtime container."""
    out = []
    for c in (rt.get("spec") or {}).get("containers") or []:
        for env in c.get("env") or []:
            if env.get("name") in BLOCKED_ENV:
                out.append(f"setting {env['name']} in container {c.get('name', '')!r} is not allowed")
    return out


def runtimes_priority_unique(runtimes: list[dict]) -> list[str]:
    """validateServingRuntimePriority: two runtimes of one namespace (or two cluster runtimes) that share a protocol
    may not give the same auto-selected format+version the same priority."""
    out = []
    for i, a in enumerate(runtimes):
        for b in runtimes[i + 1:]:
            if (a.get("kind"), (a.get("metadata") or {}).get("namespace")) != (
                    b.get("kind"), (b.get("metadata") or {}).get("namespace")):
                continue
            sa, sb = a.get("spec") or {}, b.get("spec") or {}
            if sa.get("disabled") or sb.get("disabled") or sa.get("multiModel") != sb.get("multiModel"):
                continue
            if not set(sa.get("protocolVersions") or []) & set(sb.get("protocolVersions") or []):
                continue
            for fa in _auto_formats(a):
                for fb in _auto_formats(b):
                    same = (fa.get("name", "").lower() == fb.get("name", "").lower()
                            and fa.get("version") == fb.get("version"))
                    if same and fa.get("priority") is not None and fa.get("priority") == fb.get("priority"):
                        out.append(f"same priority assigned for the model format {fa['name']} in the servingruntimes "
                                   f"{a['metadata']['name']} and {b['metadata']['name']}")
    return out


@dataclass(frozen=True)
class Rule:
    check: Callable[[dict], list[str]]
    source: str  # upstream file (at UPSTREAM) that the rule ports


ISVC_RULES = [
    Rule(isvc_name, ISVC_VALIDATION), Rule(standard_predictor_has_no_name, ISVC_VALIDATION),
    Rule(blocked_env, ENV_POLICY), Rule(replicas, COMPONENT), Rule(deployment_mode_value, CONSTANTS),
    Rule(autoscaler_class, ISVC_VALIDATION), Rule(knative_has_no_deployment_strategy, ISVC_VALIDATION),
    Rule(canary_only_in_knative, KSVC_RECONCILER),
]
RUNTIME_RULES = [Rule(runtime_priority_same_within, RUNTIME_WEBHOOK), Rule(runtime_blocked_env, RUNTIME_WEBHOOK)]


def webhook_problems(objs: list[dict[str, Any]]) -> list[str]:
    """Every ported rule over a release: ``"<Kind>/<name>: webhook: <message> [<upstream file>]"``."""
    out = []
    runtimes = [o for o in objs if o.get("kind") in ("ServingRuntime", "ClusterServingRuntime")]
    for o in objs:
        rules = ISVC_RULES if o.get("kind") == "InferenceService" else RUNTIME_RULES if o in runtimes else []
        where = f"{o.get('kind')}/{(o.get('metadata') or {}).get('name')}"
        out += [f"{where}: webhook: {msg} [{UPSTREAM} {r.source}]" for r in rules for msg in r.check(o)]
    out += [f"ServingRuntime: webhook: {msg} [{UPSTREAM} {RUNTIME_WEBHOOK}]" for msg in runtimes_priority_unique(runtimes)]
    return out
