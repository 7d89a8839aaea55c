"""apply / wait / rollback / teardown against a fake Kubernetes API server on loopback (real HTTP through the
official kubernetes client; the fake stores objects in memory like the API server's REST semantics)."""

import json
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fathom.deploy.apply import (
    KNOWN_GOOD_SPEC,
    PREVIOUS_SPEC,
    DeployError,
    KubeApi,
    apply_objects,
    isvc_ready,
    mark_known_good,
    resource_path,
    rollback_isvc,
    wait_isvc_ready,
)
from fathom.deploy.manifests import DeployConfig, applicable, render
from fathom.deploy.release import deploy_stage, read_state, smoke_stage, teardown_stage

NS = "fathom"


class FakeKube:
    """In-memory objects keyed by REST path; records every call. `ready` marks InferenceServices Ready on GET."""

    def __init__(self):
        self.objects: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.ready = True
        self.fail_next: list[int] = []
        self.version = 0
        app = FastAPI()

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def handle(path: str, request: Request):
            path = "/" + path
            self.calls.append((request.method, path))
            if self.fail_next:
                return JSONResponse({"kind": "Status", "code": self.fail_next[0]}, self.fail_next.pop(0))
            body = json.loads(await request.body() or b"null")
            return self.handle(request.method, path, body, request.headers.get("content-type", ""))

        self.app = app

    def _status(self, code, reason):
        return JSONResponse({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                             "code": code}, code)

    def handle(self, method, path, body, ctype):
        self.version += 1
        if method == "POST":
            key = f"{path}/{body['metadata']['name']}"
            if key in self.objects:
                return self._status(409, "AlreadyExists")
            body["metadata"].update(resourceVersion=str(self.version), uid=f"uid-{self.version}")
            self.objects[key] = body
            return JSONResponse(body, 201)
        obj = self.objects.get(path)
        if obj is None:
            return self._status(404, "NotFound")
        if method == "GET":
            if obj["kind"] == "InferenceService" and self.ready:
                name = obj["metadata"]["name"]
                obj["status"] = {"conditions": [{"type": "Ready", "status": "True"}],
                                 "url": f"http://{name}.{NS}.example.com",
                                 "address": {"url": f"http://{name}-predictor.{NS}.svc.cluster.local"}}
            return JSONResponse(obj)
        if method == "PUT":
            if body["metadata"].get("resourceVersion") != obj["metadata"]["resourceVersion"]:
                return self._status(409, "Conflict")
            body["metadata"]["resourceVersion"] = str(self.version)
            self.objects[path] = body
            return JSONResponse(body)
        if method == "PATCH":
            assert ctype == "application/merge-patch+json"
            _merge(obj, body)
            obj["metadata"]["resourceVersion"] = str(self.version)
            return JSONResponse(obj)
        if method == "DELETE":
            del self.objects[path]
            return JSONResponse({"kind": "Status", "status": "Success"})
        return self._status(405, "MethodNotAllowed")


def _merge(target, patch):
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        elif v is None:
            target.pop(k, None)
        else:
            target[k] = v


@pytest.fixture()
def kube():
    from kubernetes import client

    fake = FakeKube()
    server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    conf = client.Configuration(host=f"http://127.0.0.1:{port}")
    conf.api_key = {"authorization": "Bearer test-token"}
    fake.api = KubeApi(client.ApiClient(conf), timeout_s=10, retries=2)
    yield fake
    server.should_exit = True
    thread.join(5)


def isvc_path(name):
    return resource_path("serving.kserve.io/v1beta1", "InferenceService", NS, name)


def test_resource_paths():
    assert resource_path("v1", "Service", "ns", "a") == "/api/v1/namespaces/ns/services/a"
    assert resource_path("autoscaling/v2", "HorizontalPodAutoscaler", "ns") == (
        "/apis/autoscaling/v2/namespaces/ns/horizontalpodautoscalers")
    with pytest.raises(DeployError):
        resource_path("v1", "Pod", "ns")


def test_apply_creates_then_updates_and_rollback_restores(kube):
    cfg = DeployConfig()
    objs = applicable(render(cfg))
    assert "Secret" not in {o["kind"] for o in objs}  # templates are never applied
    actions = apply_objects(kube.api, objs)
    assert {a.action for a in actions} == {"created"} and len(actions) == len(objs) == 9
    assert kube.objects[isvc_path("fathom-search")]["spec"]["predictor"]["model"]["storageUri"].endswith("/v1")

    new_policy = cfg.policy.model_copy(update={"storage_uri": "s3://fathom/models/fathom-search/v2"})
    cfg2 = DeployConfig(policy=new_policy)
    actions = apply_objects(kube.api, applicable(render(cfg2)), release_id="r2")
    assert {a.action for a in actions} == {"updated"}
    live = kube.objects[isvc_path("fathom-search")]
    assert live["spec"]["predictor"]["model"]["storageUri"].endswith("/v2")
    previous = json.loads(live["metadata"]["annotations"][PREVIOUS_SPEC])
    assert previous["predictor"]["model"]["storageUri"].endswith("/v1")
    # a retry of the same release must not record its own (new) spec as "previous"
    apply_objects(kube.api, applicable(render(cfg2)), release_id="r2")
    live = kube.objects[isvc_path("fathom-search")]
    assert json.loads(live["metadata"]["annotations"][PREVIOUS_SPEC]) == previous

    assert wait_isvc_ready(kube.api, NS, "fathom-search", timeout_s=5, poll_s=0.1) == (
        "http://fathom-search-predictor.fathom.svc.cluster.local")
    assert rollback_isvc(kube.api, NS, "fathom-search").action == "restored"
    restored = kube.objects[isvc_path("fathom-search")]
    assert restored["spec"]["predictor"]["model"]["storageUri"].endswith("/v1")
    assert PREVIOUS_SPEC not in restored["metadata"]["annotations"] and "status" not in restored


def test_rollback_goes_to_the_last_known_good_spec(kube):
    """v1 passes its smoke test (known good); v2 is applied and fails; v3 is applied and fails: rollback → v1."""
    def cfg(v):
        return DeployConfig(synthesizer=None, tool_server=None, policy=DeployConfig().policy.model_copy(
            update={"storage_uri": f"s3://fathom/models/fathom-search/{v}"}))

    apply_objects(kube.api, applicable(render(cfg("v1"))), release_id="r1")
    mark_known_good(kube.api, NS, "fathom-search")
    apply_objects(kube.api, applicable(render(cfg("v2"))), release_id="r2")
    apply_objects(kube.api, applicable(render(cfg("v3"))), release_id="r3")
    live = kube.objects[isvc_path("fathom-search")]
    assert KNOWN_GOOD_SPEC in live["metadata"]["annotations"]  # carried over by every apply
    assert rollback_isvc(kube.api, NS, "fathom-search").action == "restored"
    assert kube.objects[isvc_path("fathom-search")]["spec"]["predictor"]["model"]["storageUri"].endswith("/v1")


def test_readiness_needs_the_applied_generation():
    ready = {"type": "Ready", "status": "True"}
    assert not isvc_ready({"metadata": {"generation": 3}, "status": {"observedGeneration": 2, "conditions": [ready]}})
    assert isvc_ready({"metadata": {"generation": 3}, "status": {"observedGeneration": 3, "conditions": [ready]}})


def test_apply_refuses_a_deployment_mode_change_and_keeps_hpa_replicas(kube):
    cfg = DeployConfig(synthesizer=None)
    apply_objects(kube.api, applicable(render(cfg)))
    dep_path = resource_path("apps/v1", "Deployment", NS, "fathom-tools")
    kube.objects[dep_path]["spec"]["replicas"] = 5  # scaled by the HPA
    apply_objects(kube.api, applicable(render(cfg)))
    assert kube.objects[dep_path]["spec"]["replicas"] == 5
    kube.objects[isvc_path("fathom-search")]["status"] = {"deploymentMode": "RawDeployment"}
    kube.ready = False
    with pytest.raises(DeployError, match="deploymentMode cannot be changed from 'Standard' to 'Serverless'"):
        apply_objects(kube.api, applicable(render(DeployConfig(synthesizer=None, deployment_mode="Serverless"))))


def test_rollback_canary_and_first_deploy(kube):
    cfg = DeployConfig(synthesizer=None, tool_server=None, deployment_mode="Serverless",
                       policy=DeployConfig().policy.model_copy(update={"canary_traffic_percent": 10}))
    apply_objects(kube.api, applicable(render(cfg)))
    assert rollback_isvc(kube.api, NS, "fathom-search").action == "canary-to-0"
    assert kube.objects[isvc_path("fathom-search")]["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert ("PATCH", isvc_path("fathom-search")) in kube.calls
    # canary at 0 and nothing recorded (first deploy): rollback removes the service
    assert rollback_isvc(kube.api, NS, "fathom-search").action == "deleted"
    assert rollback_isvc(kube.api, NS, "fathom-search").action == "absent"


def test_retries_transient_errors_and_times_out(kube):
    kube.fail_next = [503, 503]
    assert kube.api.get("v1", "Service", NS, "missing") is None  # two 503s retried, then 404 -> None
    assert kube.calls[-3:] == [("GET", "/api/v1/namespaces/fathom/services/missing")] * 3
    apply_objects(kube.api, applicable(render(DeployConfig(synthesizer=None, tool_server=None))))
    kube.ready = False
    with pytest.raises(DeployError, match="not ready after"):
        wait_isvc_ready(kube.api, NS, "fathom-search", timeout_s=0.3, poll_s=0.1)


def test_cluster_release_smoke_failure_rolls_back(kube, tmp_path):
    """deploy_stage (cluster) → smoke against endpoints that don't answer → rollback → teardown (ephemeral)."""
    cfg = DeployConfig(tool_server=None)
    state = deploy_stage(cfg, manifests_dir=tmp_path / "m", state_dir=tmp_path / "s", cluster=True,
                         ready_timeout_s=5, api=kube.api)
    assert state["mode"] == "cluster" and state["policy"].endswith("svc.cluster.local/v1#fathom-search")
    state["policy"] = "http://127.0.0.1:9/v1#fathom-search"  # nothing listens on the discard port
    state["synthesizer"] = None
    (tmp_path / "s" / "release.json").write_text(json.dumps(state))
    with pytest.raises(DeployError, match="smoke test failed \\(rolled back\\)"):
        smoke_stage(tmp_path / "s", timeout_s=5, api=kube.api)
    after = read_state(tmp_path / "s")
    assert {r["action"] for r in after["rollback"]} == {"deleted"}  # first deploy: nothing to restore
    assert isvc_path("fathom-search") not in kube.objects
    out = teardown_stage(tmp_path / "servers", ephemeral=True, cfg=cfg, api=kube.api)
    assert out["stopped_pids"] == [] and {"ServingRuntime"} <= {a["kind"] for a in out["deleted"]}
    assert not any("servingruntimes" in k for k in kube.objects)
