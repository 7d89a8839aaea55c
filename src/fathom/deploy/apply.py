"""Apply a rendered release to a cluster, wait for readiness, roll back.

Talks to the API server through the official kubernetes client's ``ApiClient`` (kubeconfig or in-cluster
service-account auth, TLS, request timeouts) with one generic REST path per kind, so InferenceServices,
ServingRuntimes and core objects go through the same create/replace/patch/delete code.

Rollback of an InferenceService, in order of preference:

1. a canary is running (``canaryTrafficPercent`` > 0, Serverless mode): set it to 0 — traffic returns to the last
   rolled-out revision;
2. the previous spec was recorded at apply time (annotation ``fathom.ai/previous-spec``): restore it;
3. the service did not exist before this release: delete it.
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
PLURALS = {
    "InferenceService": "inferenceservices", "ServingRuntime": "servingruntimes", "Deployment": "deployments",
    "Service": "services", "ServiceAccount": "serviceaccounts", "Secret": "secrets", "ConfigMap": "configmaps",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers", "Role": "roles", "RoleBinding": "rolebindings",
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


def apply_objects(api: KubeApi, objs: list[dict]) -> list[Action]:
    """Create or replace each object. An updated InferenceService records its previous spec for rollback."""
    actions = []
    for obj in objs:
        obj = json.loads(json.dumps(obj))  # never mutate the caller's dicts
        m = obj["metadata"]
        current = api.get(obj["apiVersion"], obj["kind"], m["namespace"], m["name"])
        if current is None:
            api.create(obj)
            actions.append(Action(kind=obj["kind"], name=m["name"], action="created"))
            continue
        m["resourceVersion"] = current["metadata"].get("resourceVersion")
        if obj["kind"] == "InferenceService":
            m.setdefault("annotations", {})[PREVIOUS_SPEC] = json.dumps(current.get("spec") or {}, sort_keys=True)
        if obj["kind"] == "Service" and "clusterIP" in (current.get("spec") or {}):
            obj["spec"]["clusterIP"] = current["spec"]["clusterIP"]  # immutable field
        api.replace(obj)
        actions.append(Action(kind=obj["kind"], name=m["name"], action="updated"))
    return actions


def isvc_ready(isvc: dict) -> bool:
    conditions = (isvc.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


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
    previous = ((isvc.get("metadata") or {}).get("annotations") or {}).get(PREVIOUS_SPEC)
    if previous:
        restored = json.loads(json.dumps(isvc))
        restored["spec"] = json.loads(previous)
        restored["metadata"]["annotations"].pop(PREVIOUS_SPEC)
        restored.pop("status", None)
        api.replace(restored)
        return Action(kind="InferenceService", name=name, action="restored")
    api.delete(ISVC_API, "InferenceService", namespace, name)
    return Action(kind="InferenceService", name=name, action="deleted")


def delete_objects(api: KubeApi, objs: list[dict]) -> list[Action]:
    """Delete objects (reverse order); used to release an ephemeral (test) deployment."""
    out = []
    for obj in reversed(objs):
        m = obj["metadata"]
        gone = api.delete(obj["apiVersion"], obj["kind"], m["namespace"], m["name"])
        out.append(Action(kind=obj["kind"], name=m["name"], action="deleted" if gone else "absent"))
    return out
