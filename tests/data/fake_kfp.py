"""A fake KFP v2beta1 REST API (the part `fathom pipeline upload|submit|schedule` uses), served on loopback and
reached by the real `kfp.Client` over HTTP.

Request bodies are validated with the `kfp-server-api` models (deserialised, re-serialised, compared: an unknown
or misspelt field, a wrong enum, a wrong shape is a 400), and against the state the backend keeps: the referenced
pipeline version and experiment must exist, runtime parameters must be parameters of that version's pipeline spec,
with the JSON type of their IR type (a LIST parameter takes a JSON array, not a string), and required ones present.
State: pipelines, versions, experiments, runs, recurring runs.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import yaml
from fastapi import FastAPI, File, HTTPException, Request, UploadFile

API = "/apis/v2beta1"

_JSON_TYPES = {"STRING": (str,), "NUMBER_INTEGER": (int,), "NUMBER_DOUBLE": (int, float), "BOOLEAN": (bool,),
               "LIST": (list,), "STRUCT": (dict,)}


def _strip(obj: Any) -> Any:
    """Comparable form: no empty fields; numbers as strings (int64 fields are strings in the proto JSON mapping,
    and grpc-gateway accepts either; parameter value types are checked separately)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if v is not None and v != {} and v != []}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return str(obj)
    return obj


class FakeKFP:
    def __init__(self) -> None:
        from kfp_server_api import ApiClient

        self._api = ApiClient()
        self._clock = itertools.count()
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.app = self._build()

    # ------------------------------------------------------------------ helpers
    def validate(self, body: Any, model: str) -> Any:
        """Deserialise `body` as kfp_server_api `model`; any field it does not know, or cannot represent, is a 400."""
        try:
            obj = self._api._ApiClient__deserialize(body, model)
        except (ValueError, TypeError) as exc:
            raise HTTPException(400, f"invalid {model}: {exc}") from exc
        back = self._api.sanitize_for_serialization(obj)
        if _strip(back) != _strip(body):
            raise HTTPException(400, f"invalid {model}: fields not in the API model: "
                                     f"{json.dumps(_strip(body), sort_keys=True)} != "
                                     f"{json.dumps(_strip(back), sort_keys=True)}")
        return obj

    def out(self, obj: dict, model: str) -> dict:
        """A stored object as the API returns it (shape checked by the same model)."""
        return self._api.sanitize_for_serialization(self._api._ApiClient__deserialize(obj, model))

    def _now(self) -> str:
        next(self._clock)
        return datetime.now(timezone.utc).isoformat()

    @staticmethod
    def _filtered(items: list[dict], flt: str | None) -> list[dict]:
        if not flt:
            return items
        for pred in json.loads(flt).get("predicates", []):
            if pred.get("operation") not in ("EQUALS", 1):
                raise HTTPException(400, f"fake supports EQUALS filters only: {pred}")
            value = pred.get("stringValue", pred.get("string_value"))
            items = [i for i in items if i.get(pred["key"]) == value]
        return items

    @staticmethod
    def _sorted(items: list[dict], sort_by: str | None) -> list[dict]:
        items = sorted(items, key=lambda i: i["_seq"])
        if sort_by:
            key, _, order = sort_by.partition(" ")
            if key != "created_at":
                raise HTTPException(400, f"fake sorts by created_at only: {sort_by}")
            if order == "desc":
                items.reverse()
        return items

    @staticmethod
    def _public(item: dict) -> dict:
        return {k: v for k, v in item.items() if not k.startswith("_")}

    def check_runtime(self, body: dict) -> None:
        """The run's pipeline version and experiment exist; its parameters fit the version's pipeline spec."""
        ref = body.get("pipeline_version_reference")
        if not ref or body.get("pipeline_spec"):
            raise HTTPException(400, "this fake expects runs of an uploaded version (pipeline_version_reference)")
        version = self.versions.get(ref.get("pipeline_version_id") or "")
        if version is None or version["pipeline_id"] != ref.get("pipeline_id"):
            raise HTTPException(404, f"no pipeline version {ref}")
        if body.get("experiment_id") not in self.experiments:
            raise HTTPException(404, f"no experiment {body.get('experiment_id')!r}")
        params = (body.get("runtime_config") or {}).get("parameters") or {}
        spec = version["pipeline_spec"]["root"].get("inputDefinitions", {}).get("parameters", {})
        errors = []
        for key, value in params.items():
            if key not in spec:
                errors.append(f"{key}: not a parameter")
            elif not isinstance(value, _JSON_TYPES[spec[key]["parameterType"]]) or (
                    isinstance(value, bool) and spec[key]["parameterType"] != "BOOLEAN"):
                errors.append(f"{key}: {spec[key]['parameterType']} parameter got {type(value).__name__} {value!r}")
        for key, p in spec.items():
            if key not in params and "defaultValue" not in p and not p.get("isOptional"):
                errors.append(f"{key}: required")
        if errors:
            raise HTTPException(400, "invalid runtime_config.parameters: " + "; ".join(errors))

    # ------------------------------------------------------------------ routes
    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next):
            self.requests.append((request.method, request.url.path))
            return await call_next(request)

        @app.get(f"{API}/healthz")
        def healthz():
            return {"multi_user": False}

        @app.post(f"{API}/pipelines")
        async def create_pipeline(request: Request):
            body = await request.json()
            self.validate(body, "V2beta1Pipeline")
            name = body.get("display_name")
            if not name or any(p["display_name"] == name for p in self.pipelines.values()):
                raise HTTPException(409, f"pipeline name {name!r} missing or taken")
            pid = str(uuid.uuid4())
            self.pipelines[pid] = {**body, "pipeline_id": pid, "created_at": self._now(), "_seq": next(self._clock)}
            return self.out(self._public(self.pipelines[pid]), "V2beta1Pipeline")

        @app.post(f"{API}/pipelines/upload")
        def upload_pipeline():
            raise HTTPException(400, "fathom creates the pipeline, then uploads named versions")

        @app.get(f"{API}/pipelines")
        def list_pipelines(filter: str | None = None, sort_by: str | None = None, page_size: int = 20,
                           page_token: str | None = None, namespace: str | None = None):
            items = self._sorted(self._filtered(list(self.pipelines.values()), filter), sort_by)
            return self.out({"pipelines": [self._public(i) for i in items], "total_size": len(items)},
                            "V2beta1ListPipelinesResponse")

        @app.get(f"{API}/pipelines/{{pipeline_id}}")
        def get_pipeline(pipeline_id: str):
            if pipeline_id not in self.pipelines:
                raise HTTPException(404, "no such pipeline")
            return self.out(self._public(self.pipelines[pipeline_id]), "V2beta1Pipeline")

        @app.post(f"{API}/pipelines/upload_version")
        async def upload_version(uploadfile: UploadFile = File(...), name: str | None = None,
                                 pipelineid: str | None = None, description: str | None = None,
                                 display_name: str | None = None):
            if pipelineid not in self.pipelines:
                raise HTTPException(404, f"no pipeline {pipelineid!r}")
            vname = display_name or name
            if not vname or any(v["pipeline_id"] == pipelineid and v["display_name"] == vname
                                for v in self.versions.values()):
                raise HTTPException(409, f"version name {vname!r} missing or taken")
            docs = list(yaml.safe_load_all(await uploadfile.read()))
            if not docs or "root" not in docs[0] or "pipelineInfo" not in docs[0]:
                raise HTTPException(400, "not a KFP IR YAML package")
            vid = str(uuid.uuid4())
            self.versions[vid] = {"pipeline_id": pipelineid, "pipeline_version_id": vid, "display_name": vname,
                                  "name": vname, "description": description, "created_at": self._now(),
                                  "pipeline_spec": docs[0], "_platform": docs[1:], "_seq": next(self._clock)}
            return self.out(self._public(self.versions[vid]), "V2beta1PipelineVersion")

        @app.get(f"{API}/pipelines/{{pipeline_id}}/versions")
        def list_versions(pipeline_id: str, filter: str | None = None, sort_by: str | None = None,
                          page_size: int = 20, page_token: str | None = None):
            items = [v for v in self.versions.values() if v["pipeline_id"] == pipeline_id]
            items = self._sorted(self._filtered(items, filter), sort_by)[:page_size]
            return self.out({"pipeline_versions": [self._public(i) for i in items], "total_size": len(items)},
                            "V2beta1ListPipelineVersionsResponse")

        @app.post(f"{API}/experiments")
        async def create_experiment(request: Request):
            body = await request.json()
            self.validate(body, "V2beta1Experiment")
            if any(e["display_name"] == body.get("display_name") for e in self.experiments.values()):
                raise HTTPException(409, "experiment name taken")
            eid = str(uuid.uuid4())
            self.experiments[eid] = {**body, "experiment_id": eid, "created_at": self._now(),
                                     "storage_state": "AVAILABLE", "_seq": next(self._clock)}
            return self.out(self._public(self.experiments[eid]), "V2beta1Experiment")

        @app.get(f"{API}/experiments")
        def list_experiments(filter: str | None = None, sort_by: str | None = None, page_size: int = 20,
                             page_token: str | None = None, namespace: str | None = None):
            items = self._sorted(self._filtered(list(self.experiments.values()), filter), sort_by)
            return self.out({"experiments": [self._public(i) for i in items], "total_size": len(items)},
                            "V2beta1ListExperimentsResponse")

        @app.post(f"{API}/runs")
        async def create_run(request: Request):
            body = await request.json()
            self.validate(body, "V2beta1Run")
            self.check_runtime(body)
            rid = str(uuid.uuid4())
            self.runs[rid] = {**body, "run_id": rid, "state": "PENDING", "created_at": self._now(),
                              "_seq": next(self._clock)}
            return self.out(self._public(self.runs[rid]), "V2beta1Run")

        @app.get(f"{API}/runs/{{run_id}}")
        def get_run(run_id: str):
            if run_id not in self.runs:
                raise HTTPException(404, "no such run")
            return self.out(self._public(self.runs[run_id]), "V2beta1Run")

        @app.post(f"{API}/recurringruns")
        async def create_recurring_run(request: Request):
            body = await request.json()
            self.validate(body, "V2beta1RecurringRun")
            self.check_runtime(body)
            cron = ((body.get("trigger") or {}).get("cron_schedule") or {}).get("cron", "")
            if len(cron.split()) != 6:
                raise HTTPException(400, f"cron {cron!r}: 6 fields expected")
            rid = str(uuid.uuid4())
            self.recurring_runs[rid] = {**body, "recurring_run_id": rid, "status": "ENABLED",
                                        "created_at": self._now(), "_seq": next(self._clock)}
            return self.out(self._public(self.recurring_runs[rid]), "V2beta1RecurringRun")

        @app.get(f"{API}/recurringruns")
        def list_recurring_runs(filter: str | None = None, sort_by: str | None = None, page_size: int = 20,
                                page_token: str | None = None, experiment_id: str | None = None,
                                namespace: str | None = None):
            items = [r for r in self.recurring_runs.values()
                     if experiment_id is None or r.get("experiment_id") == experiment_id]
            items = self._sorted(self._filtered(items, filter), sort_by)
            return self.out({"recurringRuns": [self._public(i) for i in items], "total_size": len(items)},
                            "V2beta1ListRecurringRunsResponse")

        @app.get(f"{API}/recurringruns/{{rid}}")
        def get_recurring_run(rid: str):
            if rid not in self.recurring_runs:
                raise HTTPException(404, "no such recurring run")
            return self.out(self._public(self.recurring_runs[rid]), "V2beta1RecurringRun")

        @app.delete(f"{API}/recurringruns/{{rid}}")
        def delete_recurring_run(rid: str):
            if self.recurring_runs.pop(rid, None) is None:
                raise HTTPException(404, "no such recurring run")
            return {}

        return app


class ServedFakeKFP:
    """The fake on a loopback port in a thread (uvicorn); `url` for `kfp.Client(host=...)`."""

    def __init__(self) -> None:
        import uvicorn

        self.fake = FakeKFP()
        self.server = uvicorn.Server(uvicorn.Config(self.fake.app, host="127.0.0.1", port=0, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ServedFakeKFP":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake KFP did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(5)
