"""The retraining run's settings: the KFP UI form (`RetrainForm`, a dozen typed fields) on top of a profile (a
versioned YAML file in `fathom/profiles/`: paper | smoke | embedded) and an optional advanced-overrides file;
the run layout (per-run object-store prefixes, the release's DeployConfig, where the next baseline goes); and the
`validate` checks that fail a run within minutes, with one message listing everything missing, before any GPU is
requested. Pure library: paths, URIs and dicts; the components in components/retrain.py map KFP onto it.

Resolution order (later wins): profile `settings` ← `config_uri` overrides (a YAML/JSON mapping of the same keys,
local or s3://; each replaces the profile's value as a whole) ← the form's non-empty fields (roles are also placed into the stage configs that use them).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel, Field

from fathom.errors import ConfigError

PROFILES_DIR = Path(__file__).parent / "profiles"
PROFILES = ("paper", "smoke", "embedded")

#: settings that are JSON configs (dicts in the profile, JSON strings for the pipeline body)
JSON_SETTINGS = ("duetqa_config", "sft_config", "stage1_config_json", "stage2_config_json", "sft_config_json",
                 "eval_config_json", "deploy_config", "launch_config_json")
#: roles a profile may require in the form
ROLES = ("judge", "labeller", "query_llm", "teacher", "solvers")
#: role values that are deterministic stand-ins, not models
NON_MODEL_ROLES = {"exact", "heuristic", "none", "expert:offline-web", ""}
EMBEDDED_ROLE = "local:smollm2"
NO_BASELINE = "NO_BASELINE"  # marker object the bootstrap pipeline writes at the baseline URI (first release)


class RetrainForm(BaseModel):
    """The parameters of `fathom-retrain` a person fills in (empty / 0 = the profile's value)."""

    profile: str = Field(default="paper", description="paper | smoke | embedded (fathom/profiles/<name>.yaml).")
    policy_base_model: str = Field(default="", description="Search-agent base model: s3:// URI, folder or local:.")
    synth_base_model: str = Field(default="", description="Synthesizer base model: s3:// URI, folder or local:.")
    judge: str = Field(default="", description="Answer judge role (URL#model@KEY_ENV; 'exact' = matching only).")
    labeller: str = Field(default="", description="Stage-2 step labeller role ('heuristic' = no model).")
    query_llm: str = Field(default="", description="Query-LLM role reading pages for the in-process tool server.")
    teacher: str = Field(default="", description="SFT-corpus report teacher role.")
    solvers: list = Field(default=[], description="DuetQA roles [M1, M2, M3] (search, search, no-search); one "
                          "entry = all three. M1 also collects the SFT corpus traces.")
    n_duetqa: int = Field(default=0, ge=0, description="DuetQA questions to generate (0: profile).")
    n_sft: int = Field(default=0, ge=0, description="SFT-corpus items (0: profile).")
    benchmarks: list = Field(default=[], description="Evaluation benchmarks (empty: profile).")
    gate_require: str = Field(default="", description="Quality gate: better | not-worse (empty: profile).")
    output_uri: str = Field(default="", description="Object-store prefix of the run's outputs (empty: profile).")
    namespace: str = Field(default="", description="Kubernetes namespace of the release (empty: profile).")
    config_uri: str = Field(default="", description="Optional YAML/JSON of advanced overrides (local or s3://).")


def load_profile(name: str) -> dict[str, Any]:
    """A profile file: {cluster, allow_embedded, required_roles, settings}."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return yaml.safe_load((PROFILES_DIR / f"{name}.yaml").read_text())


def _load_overrides(config_uri: str) -> dict:
    if not config_uri:
        return {}
    from fathom import storage

    data = yaml.safe_load(storage.read_text(config_uri))
    if not isinstance(data, dict):
        raise ConfigError(f"config_uri {config_uri}: expected a mapping of settings")
    return data


def resolve(form: RetrainForm | dict, *, overrides: dict | None = None) -> dict[str, Any]:
    """The full settings of one run (the body parameters of `fathom-retrain-run`, JSON configs as dicts) plus
    `profile`, `cluster_profile`, `allow_embedded`, `required_roles`, `roles_given`."""
    form = form if isinstance(form, RetrainForm) else RetrainForm.model_validate(form)
    profile = load_profile(form.profile)
    settings = copy.deepcopy(profile["settings"])
    over = overrides if overrides is not None else _load_overrides(form.config_uri)
    unknown = sorted(set(over) - set(settings))
    if unknown:
        raise ConfigError(f"config_uri: unknown settings {unknown}; known: {sorted(settings)}")
    settings.update(copy.deepcopy(over))  # each overridden setting replaces the profile's (a config as a whole)
    for key in ("policy_base_model", "synth_base_model", "judge", "labeller", "output_uri", "namespace",
                "gate_require"):
        if getattr(form, key):
            settings[key] = getattr(form, key)
    for key in ("n_duetqa", "n_sft"):
        if getattr(form, key) > 0:
            settings[key] = getattr(form, key)
    if form.benchmarks:
        settings["benchmarks"] = list(form.benchmarks)
    # roles into the stage configs that use them
    if form.judge:
        settings["duetqa_config"]["judge"] = form.judge
        settings["eval_config_json"]["judge"] = form.judge
    if form.query_llm:
        settings["eval_config_json"]["query_llm"] = form.query_llm
    if form.teacher:
        settings["sft_config"]["teacher"] = form.teacher
    if form.solvers:
        solvers = [str(s) for s in form.solvers]
        if len(solvers) not in (1, 3):
            raise ConfigError(f"solvers: give [M1, M2, M3] or one role for all three, got {len(solvers)}")
        m1, m2, m3 = solvers * 3 if len(solvers) == 1 else solvers
        settings["duetqa_config"].update(m1=m1, m2=m2, m3=m3)
        settings["sft_config"]["policy"] = m1
    settings.update(profile=form.profile, cluster_profile=bool(profile["cluster"]),
                    allow_embedded=bool(profile.get("allow_embedded")),
                    required_roles=list(profile.get("required_roles", [])),
                    roles_given={r: getattr(form, r) for r in ROLES if getattr(form, r)})
    return settings


def role_values(settings: dict) -> dict[str, str]:
    """{where: role spec} of every model role the run will call."""
    duet, sft, ev = settings["duetqa_config"], settings["sft_config"], settings["eval_config_json"]
    out = {"judge": settings["judge"], "labeller": settings["labeller"],
           "duetqa.m1": duet.get("m1", ""), "duetqa.m2": duet.get("m2", ""), "duetqa.m3": duet.get("m3", ""),
           "duetqa.judge": duet.get("judge", ""), "sft.policy": sft.get("policy", ""),
           "sft.teacher": sft.get("teacher", ""), "eval.judge": ev.get("judge") or "",
           "eval.query_llm": ev.get("query_llm", "none"), "baseline_policy": settings["baseline_policy"]}
    return out


# --------------------------------------------------------------------------------------------------- run layout
def run_layout(settings: dict, run_id: str) -> dict[str, str]:
    """Per-run prefixes under `output_uri` (`<output_uri>/runs/<run_id>/...`; all empty when `output_uri` is
    empty: checkpoints stay in the pipeline root, nothing is uploaded; models go to `.../models/<InferenceService
    name>`), the release's DeployConfig (namespace and model storage URIs set, validated: a bad namespace fails
    here), and where a released candidate's evaluation becomes the next baseline (`baseline_uri`, else
    `<output_uri>/deployed-eval`; empty: not promoted)."""
    from fathom.deploy.manifests import DeployConfig

    base = settings.get("output_uri", "").rstrip("/")
    run = f"{base}/runs/{run_id or 'manual'}" if base else ""

    def under(rel: str) -> str:
        return f"{run}/{rel}" if run else ""

    deploy = settings.get("deploy_config") or {}
    cfg = DeployConfig.model_validate(json.loads(deploy) if isinstance(deploy, str) else deploy).model_dump()
    policy_uri = under(f"models/{cfg['policy']['name']}")
    synth_uri = under(f"models/{cfg['synthesizer']['name']}") if cfg.get("synthesizer") else ""
    if settings.get("namespace"):
        cfg["namespace"] = settings["namespace"]
    if policy_uri:
        cfg["policy"]["storage_uri"] = policy_uri
    if synth_uri:
        cfg["synthesizer"]["storage_uri"] = synth_uri
    release = DeployConfig.model_validate(cfg)
    target = (settings.get("baseline_uri") or (f"{base}/deployed-eval" if base else "")).rstrip("/")
    parent, _, name = target.rpartition("/") if target else ("", "", "")
    return {"run_uri": run, "warmstart_checkpoints": under("checkpoints/policy-warmstart"),
            "stage1_checkpoints": under("checkpoints/rapo-stage1"),
            "stage2_checkpoints": under("checkpoints/rapo-stage2"), "sft_checkpoints": under("checkpoints/synthesizer-sft"),
            "policy_uri": policy_uri, "synth_uri": synth_uri, "deploy_config": release.model_dump_json(),
            "baseline_parent": parent, "baseline_name": name}


#: The parameters of the `fathom-retrain-run` body and their KFP types, in order: the settings (JSON configs as
#: strings), then the run layout (`run_layout`). The plan component's outputs (`RetrainPlan`) and the body pipeline's
#: signature are both generated from this one table.
BODY_TYPES: dict[str, type] = {
    "preset": str, "policy_base_model": str, "synth_base_model": str, "judge": str, "labeller": str,
    "tools_url": str, "n_duetqa": int, "n_sft": int, "duetqa_config": str, "sft_config": str,
    "filter_limit_per_source": int, "stage1_config_json": str, "stage2_config_json": str, "sft_config_json": str,
    "dtype": str, "synth_yarn_factor": float, "synth_original_max_pos": int, "benchmarks": list,
    "eval_config_json": str, "eval_limit": int, "baseline_policy": str, "baseline_uri": str, "gate_require": str,
    "gate_min_delta": float, "gate_max_drop": float, "cluster": bool, "servers_dir": str, "ready_timeout_s": float,
    "expect": str, "smoke_agent": bool, "rollback": bool, "ephemeral": bool,
    "launcher": str, "launch_config_json": str,
    # run layout
    "run_uri": str, "warmstart_checkpoints": str, "stage1_checkpoints": str, "stage2_checkpoints": str,
    "sft_checkpoints": str, "policy_uri": str, "synth_uri": str, "deploy_config": str, "baseline_parent": str,
    "baseline_name": str,
}
#: the body parameters that come from the run layout (`run_layout`); the rest come from the settings
PLAN_OUTPUTS = ("run_uri", "warmstart_checkpoints", "stage1_checkpoints", "stage2_checkpoints", "sft_checkpoints",
                "policy_uri", "synth_uri", "deploy_config", "baseline_parent", "baseline_name")
BODY_SETTINGS = tuple(k for k in BODY_TYPES if k not in PLAN_OUTPUTS)
BODY_PARAMETERS = tuple(BODY_TYPES)
#: the outputs of the plan component (components/retrain.py)
RetrainPlan = NamedTuple("RetrainPlan", list(BODY_TYPES.items()))


def body_arguments(settings: dict, run_id: str) -> dict[str, Any]:
    """Every parameter of the `fathom-retrain-run` body: settings (JSON configs as strings) + the run layout
    (whose `deploy_config` replaces the setting: namespace and model URIs applied)."""
    out: dict[str, Any] = {}
    for key in BODY_SETTINGS:
        value = settings[key]
        out[key] = json.dumps(value) if key in JSON_SETTINGS and not isinstance(value, str) else value
    out.update(run_layout(settings, run_id))
    return out


# --------------------------------------------------------------------------------------------------- validate
def _reachable(url: str, timeout_s: float) -> str | None:
    """None when an HTTP server answers at `url` (any status), else why not."""
    import httpx

    try:
        httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def validate(settings: dict, *, env: dict[str, str] | None = None, probe: bool = True,
             timeout_s: float = 10.0) -> list[str]:
    """Everything that would fail the run later, as a list of problems (empty: go): roles set, none silently the
    embedded model on a cluster profile, role keys in the environment, endpoints and the tool server answering,
    object-store credentials, buckets, base models and the baseline present. `probe=False` skips network calls."""
    from fathom.config import RoleConfig

    env = dict(os.environ if env is None else env)
    problems: list[str] = []
    given = settings.get("roles_given", {})
    for role in settings.get("required_roles", []):
        if not given.get(role):
            problems.append(f"role {role}: not set (the {settings['profile']} profile has no default; set it in "
                            f"the run form)")
    endpoints: dict[str, str] = {}
    for where, spec in role_values(settings).items():
        if spec in NON_MODEL_ROLES or spec is None:
            continue
        if spec == EMBEDDED_ROLE and settings.get("cluster_profile") and not settings.get("allow_embedded"):
            problems.append(f"role {where}: is the embedded model ({EMBEDDED_ROLE}) on the cluster profile "
                            f"{settings['profile']!r}; set a real endpoint")
            continue
        try:
            role = RoleConfig.parse(spec)
        except ValueError as exc:
            problems.append(f"role {where}: {exc}")
            continue
        if role.is_local:
            continue
        if role.api_key_env and not env.get(role.api_key_env):
            problems.append(f"role {where}: environment variable {role.api_key_env} is not set (Secret "
                            f"fathom-llm-keys)")
        endpoints.setdefault(role.base_url, where)
    if probe:
        for url, where in endpoints.items():
            why = _reachable(f"{url}/models", timeout_s)
            if why:
                problems.append(f"endpoint {url} (role {where}): not reachable: {why}")
        if settings.get("tools_url"):
            why = _reachable(f"{settings['tools_url'].rstrip('/')}/healthz", timeout_s)
            if why:
                problems.append(f"tool server {settings['tools_url']}: not reachable: {why} (run the bootstrap "
                                f"pipeline to deploy it)")
    problems += _validate_storage(settings, env, probe=probe)
    try:
        run_layout(settings, "validate")
    except Exception as exc:  # noqa: BLE001 - a bad namespace / deploy config: reported with the rest
        problems.append(f"deploy config / namespace: {exc}")
    return problems


def _validate_storage(settings: dict, env: dict[str, str], *, probe: bool) -> list[str]:
    from fathom import storage

    uris = {k: settings[k] for k in ("policy_base_model", "synth_base_model", "output_uri", "baseline_uri")
            if storage.is_s3(settings.get(k) or "")}
    out = settings.get("output_uri", "").rstrip("/")
    baseline = settings.get("baseline_uri") or (f"{out}/deployed-eval" if out else "")
    if not uris:
        return []
    problems = []
    if not env.get("FATHOM_S3_ENDPOINT"):
        problems.append("object store: FATHOM_S3_ENDPOINT is not set (Secret fathom-s3, key `endpoint`)")
    has_keys = env.get("FATHOM_S3_ACCESS_KEY") and env.get("FATHOM_S3_SECRET_KEY")
    has_irsa = (env.get("AWS_WEB_IDENTITY_TOKEN_FILE") or env.get("FATHOM_S3_WEB_IDENTITY_TOKEN_FILE")) and (
        env.get("AWS_ROLE_ARN") or env.get("FATHOM_S3_ROLE_ARN"))
    if not (has_keys or has_irsa):
        problems.append("object store: no credentials (Secret fathom-s3 keys `access_key`/`secret_key`, or a web "
                        "identity: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN)")
    if problems or not probe:
        return problems
    try:
        client, st = storage._client(None)
        for bucket in sorted({storage.split_s3(u)[0] for u in uris.values()}):
            if not client.bucket_exists(bucket):
                problems.append(f"object store: bucket {bucket!r} does not exist")
        for key in ("policy_base_model", "synth_base_model"):
            if key in uris and not storage.exists(uris[key]):
                problems.append(f"{key} {uris[key]}: no complete model there (run the bootstrap pipeline to seed "
                                f"it from Hugging Face)")
        if storage.is_s3(baseline) and not settings.get("baseline_policy") and not (
                storage.exists(baseline) or storage.exists(f"{baseline}/{NO_BASELINE}")):
            problems.append(f"baseline {baseline}: neither a stored evaluation nor the bootstrap's no-baseline "
                            f"record (run the bootstrap pipeline once, or set baseline_policy)")
    except Exception as exc:  # noqa: BLE001 - unreachable store, bad keys: one line in the report
        problems.append(f"object store {env.get('FATHOM_S3_ENDPOINT')}: {type(exc).__name__}: {exc}")
    return problems


def check(settings: dict, **kw: Any) -> None:
    """`validate`, raising one ConfigError that lists every problem."""
    problems = validate(settings, **kw)
    if problems:
        raise ConfigError(f"the {settings['profile']} run cannot start; fix these {len(problems)} problem(s):\n"
                          + "\n".join(f"  - {p}" for p in problems))
