"""Apply a rendered release to a cluster, wait for readiness, roll back.

Talks to the API server through the official kubernetes client's ``ApiClient`` (kubeconfig or in-cluster
service-account auth, TLS, request timeouts) with one generic REST path per kind, so InferenceServices,
ServingRuntimes and core objects go through the same create/replace/patch/delete code.

Release bookkeeping on each InferenceService (annotations):

* ``fathom.ai/release``       the release id that applied the current spec;
* ``fathom.ai/previous-spec`` the live spec found when a release first touched the service — recorded once per
  release: a retried apply of the same release id keeps it (it would otherwise record the new, bad spec);
* ``fathom.ai/known-good-spec`` the last spec that passed its smoke test (:func:`mark_known_good`).

Rollback of an InferenceService, in order of preference:

1. a canary is running (``canaryTrafficPercent`` > 0, Serverless mode): set it to 0 — traffic returns to the last
   rolled-out revision;
2. the last known-good spec: restore it;
3. the previous spec recorded by this release: restore it;
4. the service did not exist before this release: delete it.

Readiness (:func:`wait_isvc_ready`) counts only when the controller has observed the applied generation
(``status.observedGeneration`` ≥ ``metadata.generation``): a Ready condition of the old revision does not pass.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from pydantic import BaseModel

from fathom.errors import FathomError

log = logging.getLogger(__name__)

PREVIOUS_SPEC = "fathom.ai/previous-spec"
KNOWN_GOOD_SPEC = "fathom.ai/known-good-spec"
RELEASE_ID = "fathom.ai/release"
PLURALS = {
    "InferenceService": "inferenceservices", "ServingRuntime": "servingruntimes", "Deployment": "deployments",
    "Service": "services", "ServiceAccount": "serviceaccounts", "Secret": "secrets", "ConfigMap": "configmaps",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers", "Role": "roles", "RoleBinding": "rolebindings",
    "NetworkPolicy": "networkpolicies",
}
ISVC_API = "serving.kserve.io/v1beta1"
RETRYABLE = {429, 500, 502, 503, 504}


class DeployError(FathomError):
    """A cluster operation failed (after retries) or a deployment did not become ready."""


def resource_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    if kind not in PLURALS:
        raise DeployError(f"don't know the REST path of kind {kind}")
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{PLURALS[kind]}"
    return f"{path}/{name}" if name else path


class KubeApi:
    """Generic JSON REST calls on the Kubernetes API with timeouts and retries of transient failures."""

    def __init__(self, api_client=None, *, timeout_s: float = 30.0, retries: int = 3):
        from kubernetes import client

        self.api = api_client or client.ApiClient()
        self.timeout_s = timeout_s
        self.retries = retries

    @classmethod
    def from_environment(cls, context: str | None = None, **kw) -> KubeApi:
        """In-cluster service account when running in a pod, else the kubeconfig (optionally a context)."""
        from kubernetes import config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            try:
                config.load_kube_config(context=context)
            except (config.ConfigException, FileNotFoundError) as exc:
                raise DeployError(f"no cluster configured (neither in-cluster nor kubeconfig): {exc}") from exc
        return cls(**kw)

    def request(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"):
        from kubernetes.client.rest import ApiException
        from urllib3.exceptions import HTTPError

        attempt = 0
        while True:
            try:
                return self.api.call_api(
                    path, method, header_params={"Accept": "application/json", "Content-Type": content_type},
                    body=body, response_type="object", auth_settings=["BearerToken"],
                    _return_http_data_only=True, _preload_content=True, _request_timeout=self.timeout_s)
            except ApiException as exc:
                if exc.status not in RETRYABLE or attempt >= self.retries:
                    raise
                err = exc
            except HTTPError as exc:  # connection refused/reset, timeouts
                if attempt >= self.retries:
                    raise DeployError(f"{method} {path}: {exc}") from exc
                err = exc
            delay = min(8.0, 0.5 * 2**attempt)
            log.warning("%s %s failed (%s); retry in %.1fs", method, path, err, delay)
            time.sleep(delay)
            attempt += 1

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        from kubernetes.client.rest import ApiException

        try:
            return self.request("GET", resource_path(api_version, kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, obj: dict) -> dict:
        m = obj["metadata"]
        return self.request("POST", resource_path(obj["apiVersion"], obj["kind"], m["namespace"]), obj)

    def replace(self, obj: dict) -> dict:
        m = obj["metadata"]
        return self.request("PUT", resource_path(obj["apiVersion"], obj["kind"], m["namespace"], m["name"]), obj)

    def merge_patch(self, api_version: str, kind: str, namespace: str, name: str, patch: dict) -> dict:
        return self.request("PATCH", resource_path(api_version, kind, namespace, name), patch,
                            content_type="application/merge-patch+json")

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        from kubernetes.client.rest import ApiException

        try:
            self.request("DELETE", resource_path(api_version, kind, namespace, name))
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise


class Action(BaseModel):
    kind: str
    name: str
    action: str  # created | updated | canary-to-0 | restored | deleted | absent


def record_release(obj: dict, current: dict, release_id: str) -> None:
    """Set the bookkeeping annotations of an InferenceService about to replace `current` (see module doc)."""
    live = (current.get("metadata") or {}).get("annotations") or {}
    mine = obj["metadata"].setdefault("annotations", {})
    for key in (KNOWN_GOOD_SPEC,):
        if key in live:
            mine[key] = live[key]
    if live.get(RELEASE_ID) == release_id and PREVIOUS_SPEC in live:  # a retry of the same release
        mine[PREVIOUS_SPEC] = live[PREVIOUS_SPEC]
    else:
        mine[PREVIOUS_SPEC] = json.dumps(current.get("spec") or {}, sort_keys=True)
    mine[RELEASE_ID] = release_id


def apply_objects(api: KubeApi, objs: list[dict], *, release_id: str = "") -> list[Action]:
    """Create or replace each object. An InferenceService carries the release bookkeeping (module doc); KServe's
    update-time webhook rule (deployment mode unchanged) is checked before sending. A Deployment's live `replicas`
    is kept when the manifest leaves it to an HPA."""
    from fathom.deploy.webhook import deployment_mode_unchanged

    release_id = release_id or time.strftime("%Y%m%dT%H%M%S")
    actions = []
    for obj in objs:
        obj = json.loads(json.dumps(obj))  # never mutate the caller's dicts
        m = obj["metadata"]
        current = api.get(obj["apiVersion"], obj["kind"], m["namespace"], m["name"])
        if current is None:
            if obj["kind"] == "InferenceService":
                obj["metadata"].setdefault("annotations", {})[RELEASE_ID] = release_id
            api.create(obj)
            actions.append(Action(kind=obj["kind"], name=m["name"], action="created"))
            continue
        m["resourceVersion"] = current["metadata"].get("resourceVersion")
        if obj["kind"] == "InferenceService":
            problems = deployment_mode_unchanged(obj, current)
            if problems:
                raise DeployError(f"InferenceService/{m['name']}: {problems[0]}")
            record_release(obj, current, release_id)
        if obj["kind"] == "Deployment" and "replicas" not in obj["spec"] and "replicas" in (current.get("spec") or {}):
            obj["spec"]["replicas"] = current["spec"]["replicas"]  # a PUT would reset the HPA's count to 1
        if obj["kind"] == "Service" and "clusterIP" in (current.get("spec") or {}):
            obj["spec"]["clusterIP"] = current["spec"]["clusterIP"]  # immutable field
        api.replace(obj)
        actions.append(Action(kind=obj["kind"], name=m["name"], action="updated"))
    return actions


def isvc_ready(isvc: dict) -> bool:
    """Ready for the applied spec: the controller observed this generation and reports Ready=True."""
    status = isvc.get("status") or {}
    generation = (isvc.get("metadata") or {}).get("generation")
    if generation is not None and (status.get("observedGeneration") or 0) < generation:
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def wait_isvc_ready(api: KubeApi, namespace: str, name: str, *, timeout_s: float = 1800.0,
                    poll_s: float = 10.0) -> str:
    """Poll until the InferenceService is Ready; returns its URL (status.address.url, else status.url)."""
    deadline = time.monotonic() + timeout_s
    while True:
        isvc = api.get(ISVC_API, "InferenceService", namespace, name)
        if isvc and isvc_ready(isvc):
            status = isvc.get("status") or {}
            return ((status.get("address") or {}).get("url") or status.get("url") or "").rstrip("/")
        if time.monotonic() > deadline:
            conds = ((isvc or {}).get("status") or {}).get("conditions")
            raise DeployError(f"InferenceService {namespace}/{name} not ready after {timeout_s:.0f}s: {conds}")
        time.sleep(poll_s)


def rollback_isvc(api: KubeApi, namespace: str, name: str) -> Action:
    """Undo this release's change to one InferenceService (see module doc for the order)."""
    isvc = api.get(ISVC_API, "InferenceService", namespace, name)
    if isvc is None:
        return Action(kind="InferenceService", name=name, action="absent")
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    if (predictor.get("canaryTrafficPercent") or 0) > 0:
        api.merge_patch(ISVC_API, "InferenceService", namespace, name,
                        {"spec": {"predictor": {"canaryTrafficPercent": 0}}})
        return Action(kind="InferenceService", name=name, action="canary-to-0")
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    target = annotations.get(KNOWN_GOOD_SPEC) or annotations.get(PREVIOUS_SPEC)
    if target:
        restored = json.loads(json.dumps(isvc))
        restored["spec"] = json.loads(target)
        restored["metadata"]["annotations"].pop(PREVIOUS_SPEC, None)
        restored["metadata"]["annotations"][RELEASE_ID] = "rollback"
        restored.pop("status", None)
        api.replace(restored)
        return Action(kind="InferenceService", name=name, action="restored")
    api.delete(ISVC_API, "InferenceService", namespace, name)
    return Action(kind="InferenceService", name=name, action="deleted")


def mark_known_good(api: KubeApi, namespace: str, name: str) -> None:
    """Record the live spec as the last known-good one (after its smoke test passed)."""
    isvc = api.get(ISVC_API, "InferenceService", namespace, name)
    if isvc is None:
        raise DeployError(f"InferenceService {namespace}/{name} does not exist")
    api.merge_patch(ISVC_API, "InferenceService", namespace, name, {"metadata": {"annotations": {
        KNOWN_GOOD_SPEC: json.dumps(isvc.get("spec") or {}, sort_keys=True)}}})


def delete_objects(api: KubeApi, objs: list[dict]) -> list[Action]:
    """Delete objects (reverse order); used to release an ephemeral (test) deployment."""
    out = []
    for obj in reversed(objs):
        m = obj["metadata"]
        gone = api.delete(obj["apiVersion"], obj["kind"], m["namespace"], m["name"])
        out.append(Action(kind=obj["kind"], name=m["name"], action="deleted" if gone else "absent"))
    return out
