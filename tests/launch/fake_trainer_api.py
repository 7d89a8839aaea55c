"""A fake Kubernetes API server with Kubeflow Trainer v2.3.0 installed, at the HTTP boundary (FastAPI on loopback).

It serves what the Kubeflow SDK's Kubernetes backend calls: the ClusterTrainingRuntimes (the vendored runtime
manifests), TrainJob create / get / list / delete, the JobSet's pods and their (followed) logs. A created TrainJob's
body is validated against the vendored CRD's openAPIV3Schema (strict: unknown fields → 422, as kubectl's default
field validation does); a small "controller" then moves it Pending → Running → Complete or Failed (the scenario),
serving `logs` as node 0's log.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

CRDS = Path(__file__).resolve().parents[2] / "src" / "fathom" / "launch" / "crds" / "kubeflow-trainer-v2.3.0"
RUNTIMES = {"torch-distributed": "runtime-torch_distributed.yaml",
            "deepspeed-distributed": "runtime-deepspeed_distributed.yaml"}
TJ = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/{ns}/trainjobs"


def _schema():
    import jsonschema

    from fathom.deploy.validate import crd_schema_to_jsonschema

    crd = yaml.safe_load((CRDS / "trainer.kubeflow.org_trainjobs.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    return jsonschema.Draft7Validator(crd_schema_to_jsonschema(version["schema"]["openAPIV3Schema"]))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                         "message": message, "reason": reason, "code": code}, status_code=code)


@dataclass
class Scenario:
    outcome: str = "Complete"  # or "Failed"
    logs: list[str] = field(default_factory=lambda: ["rank0: step 1 loss 0.5", "rank0: done"])
    message: str = "trainer node-0 exited with code 1"
    line_delay_s: float = 0.0
    flaky_gets: int = 0  # the first N TrainJob GETs answer 503 (an API server restarting)
    finish_after_gets: int = 6  # the job ends after this many GETs even if nobody reads its log
    #: runs the pod of node i (job, node index, env) → (exit code, log lines); None = the fixed `logs`/`outcome`
    executor: Callable[[dict, int, dict], tuple[int, list[str]]] | None = None


class FakeTrainerAPI:
    def __init__(self, scenario: Scenario | None = None):
        self.scenario = scenario or Scenario()
        self.validator = _schema()
        self.jobs: dict[tuple[str, str], dict] = {}
        self.ticks: dict[tuple[str, str], int] = {}
        self.created: list[dict] = []  # request bodies as received
        self.deleted: list[str] = []
        self.log_reads: list[dict] = []
        self.lock = threading.Lock()
        self.app = self._build()

    # ------------------------------------------------------------------------------------------ the "controller"
    def _pods(self, ns: str, name: str) -> list[dict]:
        job = self.jobs.get((ns, name))
        if job is None:
            return []
        phase = job["_phase"]
        n = int(job["spec"].get("trainer", {}).get("numNodes") or 1)
        pods = []
        for i in range(n):
            pods.append({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"{name}-node-0-{i}-x{i}", "namespace": ns,
                             "creationTimestamp": job["metadata"]["creationTimestamp"],
                             "labels": {"jobset.sigs.k8s.io/jobset-name": name,
                                        "jobset.sigs.k8s.io/replicatedjob-name": "node",
                                        "batch.kubernetes.io/job-completion-index": str(i),
                                        "trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
                "spec": {"containers": [{"name": "node", "image": job["spec"]["trainer"].get("image", ""),
                                         "resources": job["spec"]["trainer"].get("resourcesPerNode", {})}]},
                "status": {"phase": phase}})
        return pods

    def _finish(self, key) -> None:
        job = self.jobs[key]
        if job.get("status"):
            return
        ok = self.scenario.outcome == "Complete"
        job["_phase"] = "Succeeded" if ok else "Failed"
        cond = {"type": "Complete" if ok else "Failed", "status": "True", "lastTransitionTime": _now(),
                "reason": "JobSetCompleted" if ok else "JobSetFailed",
                "message": "jobset completed" if ok else self.scenario.message}
        job["status"] = {"conditions": [cond]}

    def _execute(self, key) -> None:
        """Run every node's pod like the torch runtime would: PET_* env per node, node 0's output is the log."""
        job = self.jobs[key]
        n = int(job["spec"]["trainer"].get("numNodes") or 1)
        codes, logs = [], []
        for i in range(n):
            env = {"PET_NNODES": str(n), "PET_NODE_RANK": str(i), "PET_NPROC_PER_NODE": "1",
                   "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": "29500"}
            code, lines = self.scenario.executor(job, i, env)
            codes.append(code)
            if i == 0:
                logs = lines
        self.scenario.logs = logs
        self.scenario.outcome = "Complete" if not any(codes) else "Failed"
        self.scenario.message = ", ".join(f"node-{i} exited with code {c}" for i, c in enumerate(codes) if c)
        job["_done"].set()

    def _tick(self, key) -> None:
        self.ticks[key] = self.ticks.get(key, 0) + 1
        job = self.jobs[key]
        if self.ticks[key] >= 1 and job["_phase"] == "Pending":
            job["_phase"] = "Running"
        done = job.get("_done")
        if self.ticks[key] >= self.scenario.finish_after_gets and (done is None or done.is_set()):  # nobody read the log: the job ends anyway
            self._finish(key)

    @staticmethod
    def _public(job: dict) -> dict:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    # ------------------------------------------------------------------------------------------ the API
    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.get("/api/v1/namespaces/{ns}/configmaps/{name}")
        def configmap(ns: str, name: str):
            return _status(404, "NotFound", f'configmaps "{name}" not found')

        @app.get("/apis/trainer.kubeflow.org/v1alpha1/clustertrainingruntimes/{name}")
        def runtime(name: str):
            if name not in RUNTIMES:
                return _status(404, "NotFound", f'clustertrainingruntimes "{name}" not found')
            obj = yaml.safe_load((CRDS / RUNTIMES[name]).read_text())
            obj["metadata"].update(creationTimestamp=_now(), uid=str(uuid.uuid4()))
            return obj

        @app.post(TJ)
        async def create(ns: str, request: Request):
            body = await request.json()
            with self.lock:
                self.created.append(body)
                errors = sorted(self.validator.iter_errors(body), key=lambda e: e.json_path)
                if errors:
                    msg = "; ".join(f"{e.json_path}: {e.message}" for e in errors)
                    return _status(422, "Invalid", f'TrainJob.trainer.kubeflow.org is invalid: {msg}')
                name = body["metadata"]["name"]
                if (ns, name) in self.jobs:
                    return _status(409, "AlreadyExists", f'trainjobs.trainer.kubeflow.org "{name}" already exists')
                job = {**body, "metadata": {**body["metadata"], "namespace": ns, "uid": str(uuid.uuid4()),
                                            "creationTimestamp": _now(), "resourceVersion": "1", "generation": 1},
                       "_phase": "Pending"}
                self.jobs[(ns, name)] = job
                if self.scenario.executor is not None:
                    job["_done"] = threading.Event()
                    threading.Thread(target=self._execute, args=((ns, name),), daemon=True).start()
                return JSONResponse(self._public(job), status_code=201)

        @app.get(TJ)
        def list_jobs(ns: str, labelSelector: str = ""):
            want = dict(kv.split("=", 1) for kv in labelSelector.split(",") if "=" in kv)
            items = [self._public(j) for (n, _), j in self.jobs.items() if n == ns
                     and all(j["metadata"].get("labels", {}).get(k) == v for k, v in want.items())]
            return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJobList", "metadata": {},
                    "items": items}

        @app.get(TJ + "/{name}")
        def get(ns: str, name: str):
            with self.lock:
                if self.scenario.flaky_gets > 0 and (ns, name) in self.jobs:
                    self.scenario.flaky_gets -= 1
                    return _status(503, "ServiceUnavailable", "the server is currently unable to handle the request")
                if (ns, name) not in self.jobs:
                    return _status(404, "NotFound", f'trainjobs.trainer.kubeflow.org "{name}" not found')
                self._tick((ns, name))
                return self._public(self.jobs[(ns, name)])

        @app.delete(TJ + "/{name}")
        def delete(ns: str, name: str):
            with self.lock:
                if self.jobs.pop((ns, name), None) is None:
                    return _status(404, "NotFound", f'trainjobs.trainer.kubeflow.org "{name}" not found')
                self.deleted.append(name)
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}

        @app.get("/api/v1/namespaces/{ns}/pods")
        def pods(ns: str, labelSelector: str = ""):
            name = next((kv.split("=", 1)[1] for kv in labelSelector.split(",")
                         if kv.startswith("jobset.sigs.k8s.io/jobset-name=")), "")
            with self.lock:
                items = self._pods(ns, name)
            return {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}

        @app.get("/api/v1/namespaces/{ns}/pods/{pod}/log")
        def pod_log(ns: str, pod: str, container: str = "", follow: bool = False):
            key = next(((n, j) for (n, j) in self.jobs if n == ns and pod.startswith(f"{j}-node-")), None)
            if key is None:
                return _status(404, "NotFound", f'pods "{pod}" not found')
            self.log_reads.append({"pod": pod, "container": container, "follow": follow})
            done = self.jobs[key].get("_done")
            if done is not None:
                done.wait(120)
            lines = list(self.scenario.logs)

            def gen():
                for line in lines:
                    yield (line + "\n").encode()
                    if self.scenario.line_delay_s:
                        time.sleep(self.scenario.line_delay_s)
                with self.lock:
                    if key in self.jobs:
                        self._finish(key)  # the container exited when its log ended

            if follow:
                return StreamingResponse(gen(), media_type="text/plain")
            return PlainTextResponse("".join(x.decode() for x in gen()))

        return app


class Served:
    """The fake on a loopback port in a thread; `configuration` for the kubernetes client."""

    def __init__(self, fake: FakeTrainerAPI):
        import uvicorn

        self.fake = fake
        self.server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=0, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        from kubernetes import client

        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.configuration = client.Configuration(host=self.url)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(5)
