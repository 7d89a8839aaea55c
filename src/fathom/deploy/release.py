"""The release stages the pipeline's components call: deploy → smoke (+ rollback) → teardown.

Two modes, one contract:

* ``cluster`` (a kubeconfig or in-cluster service account is available and ``cluster=True``): apply the rendered
  manifests, wait for the InferenceServices to be Ready, smoke-test their in-cluster endpoints, roll back the
  InferenceServices when the smoke test fails.
* ``local`` (the embedded default): render and validate the same manifests, serve the converted model folder with
  a local OpenAI-compatible server, smoke-test it.

The deploy stage writes ``release.json`` (mode, endpoints, what was applied) into a folder that travels to the smoke
stage (a KFP artifact); local servers are recorded in ``servers_dir`` (a path on the machine that runs the tasks) so
that the run's exit handler can stop them even when a stage crashed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fathom.deploy.apply import (
    DeployError,
    KubeApi,
    apply_objects,
    delete_objects,
    mark_known_good,
    rollback_isvc,
    wait_isvc_ready,
)
from fathom.deploy.local import record_server, start_local_server, stop_recorded
from fathom.deploy.manifests import DeployConfig, applicable, render, write_manifests
from fathom.deploy.smoke import SmokeReport, smoke_test
from fathom.deploy.validate import validate_objects
from fathom.storage import atomic_write_text

log = logging.getLogger(__name__)
STATE = "release.json"


def servers_dir_for(servers_dir: str, run_id: str) -> Path:
    """Where a run records its local servers: `servers_dir/run_id`, default under FATHOM_HOME/release-runs."""
    from fathom.config import fathom_home

    base = Path(servers_dir) if servers_dir else fathom_home() / "release-runs"
    return base / (run_id or "default")


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    atomic_write_text(state_dir / STATE, json.dumps(state, indent=1))


def read_state(state_dir: str | Path) -> dict[str, Any]:
    path = Path(state_dir) / STATE
    if not path.exists():
        raise DeployError(f"{path} does not exist: the deploy stage did not run")
    return json.loads(path.read_text())


def render_validated(cfg: DeployConfig, out_dir: str | Path) -> list[Path]:
    """Render, validate offline, write. Raises DeployError listing every problem."""
    rendered = render(cfg)
    problems = validate_objects([o for objs in rendered.values() for o in objs])
    if problems:
        raise DeployError("rendered manifests are invalid:\n  " + "\n  ".join(problems))
    return write_manifests(cfg, out_dir)


def deploy_stage(cfg: DeployConfig, *, manifests_dir: str | Path, state_dir: str | Path,
                 model_dir: str | Path | None = None, cluster: bool = False, backend: str = "auto",
                 ready_timeout_s: float = 300.0, servers_dir: str | Path | None = None,
                 api: KubeApi | None = None, release_id: str = "") -> dict[str, Any]:
    """Render + validate the manifests, then apply them (cluster) or serve `model_dir` locally (recorded in
    `servers_dir`, default `state_dir`). Writes and returns the state (`state_dir/release.json`). `release_id` (the
    run id) makes a retried deploy keep the previous spec recorded by its first attempt."""
    state_dir = Path(state_dir)
    servers_dir = Path(servers_dir) if servers_dir else state_dir
    files = render_validated(cfg, manifests_dir)
    state: dict[str, Any] = {"manifests": [str(p) for p in files]}
    if cluster:
        api = api or KubeApi.from_environment()
        actions = apply_objects(api, applicable(render(cfg)), release_id=release_id)
        state.update(mode="cluster", namespace=cfg.namespace, release_id=release_id,
                     actions=[a.model_dump() for a in actions])
        _write_state(state_dir, state)  # before waiting: a timeout must still be rolled back / torn down
        urls = {m.name: wait_isvc_ready(api, cfg.namespace, m.name, timeout_s=ready_timeout_s) for m in cfg.models()}
        state["policy"] = f"{cfg.predictor_url(cfg.policy)}#{cfg.policy.model_name}"
        state["synthesizer"] = (f"{cfg.predictor_url(cfg.synthesizer)}#{cfg.synthesizer.model_name}"
                                if cfg.synthesizer else None)
        state["tools_url"] = (f"http://{cfg.tool_server.name}.{cfg.namespace}.svc.cluster.local"
                              if cfg.tool_server else None)
        state["isvc_urls"] = urls
    else:
        if model_dir is None:
            raise DeployError("local mode needs the converted model folder")
        server = start_local_server(model_dir, backend=backend, ready_timeout_s=ready_timeout_s,
                                    name=cfg.policy.model_name, log_path=servers_dir / "local-server.log")
        record_server(servers_dir, server)
        state.update(mode="local", policy=server.role(), synthesizer=None, tools_url=None, server=server.model_dump())
    _write_state(state_dir, state)
    return state


def smoke_stage(state_dir: str | Path, *, expect: str | None = None, rollback: bool = True,
                timeout_s: float = 120.0, max_tokens: int = 16, raise_on_failure: bool = True,
                api: KubeApi | None = None, agent: bool = False) -> SmokeReport:
    """Smoke-test what the deploy stage reported. On failure in cluster mode, roll the InferenceServices back
    first, then raise DeployError (unless `raise_on_failure` is False: the caller inspects `report.ok`). With
    `agent`, a local release also runs the search agent on a held-out offline-web question."""
    state = read_state(state_dir)
    if agent and state.get("mode") == "local":  # the release also answers a held-out question, as a user would
        report = _local_smoke(state, expect=expect, timeout_s=timeout_s, max_tokens=max_tokens)
    else:
        report = smoke_test(state["policy"], tools_url=state.get("tools_url"), synthesizer=state.get("synthesizer"),
                            expect=expect, timeout_s=timeout_s, max_tokens=max_tokens)
    state["smoke"] = report.model_dump()
    isvcs = [a["name"] for a in state.get("actions", []) if a["kind"] == "InferenceService"]
    if report.ok and state.get("mode") == "cluster":
        api = api or KubeApi.from_environment()
        for name in isvcs:
            mark_known_good(api, state["namespace"], name)
        state["known_good"] = isvcs
    if not report.ok and rollback and state.get("mode") == "cluster":
        api = api or KubeApi.from_environment()
        state["rollback"] = [rollback_isvc(api, state["namespace"], n).model_dump() for n in isvcs]
    _write_state(Path(state_dir), state)
    if not report.ok and raise_on_failure:
        raise DeployError(f"smoke test failed{' (rolled back)' if state.get('rollback') else ''}:\n{report.summary()}")
    return report


def _local_smoke(state: dict, *, expect: str | None, timeout_s: float, max_tokens: int) -> SmokeReport:
    """The endpoint checks plus one search-agent run of the deployed policy on a 1-hop question of the held-out
    offline world, through its own tool server."""
    from fathom.evaluate.heldout import HELD_OUT_WORLD_SEED
    from fathom.web.stack import EMBEDDED_RESULT_CHARS, offline_stack

    with offline_stack(seed=HELD_OUT_WORLD_SEED) as stack:
        question = stack.web.questions(1, hops=1, seed=3)[0].question
        return smoke_test(state["policy"], synthesizer=state.get("synthesizer"), expect=expect, timeout_s=timeout_s,
                          max_tokens=max_tokens, agent_question=question, agent_tools_url=stack.tools_url,
                          agent_max_result_chars=EMBEDDED_RESULT_CHARS)


def teardown_stage(servers_dir: str | Path, *, ephemeral: bool = False, cfg: DeployConfig | None = None,
                   api: KubeApi | None = None) -> dict[str, Any]:
    """Exit handler: stop the local servers recorded in `servers_dir`; with `ephemeral` (a test namespace),
    delete every applicable object of the release from the cluster. Idempotent; a no-op when nothing ran."""
    out: dict[str, Any] = {"stopped_pids": stop_recorded(servers_dir)}
    if ephemeral:
        if cfg is None:
            raise DeployError("ephemeral teardown needs the DeployConfig")
        out["deleted"] = [a.model_dump() for a in delete_objects(api or KubeApi.from_environment(),
                                                                  applicable(render(cfg)))]
    return out
