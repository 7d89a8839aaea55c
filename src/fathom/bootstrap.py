"""First run on a cluster: seed the base models into object storage from Hugging Face repo ids, deploy the tool
server, and record that no baseline exists yet (so the first retrain's gate makes an explicit first-release
decision instead of failing on a missing baseline). Each step is idempotent: what is already there is kept.
Pure library (paths and URIs); components/bootstrap.py maps KFP onto it."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fathom import storage
from fathom.errors import ConfigError
from fathom.evaluate.stages import NO_BASELINE

#: files of a model repository a checkpoint needs (weights, config, tokenizer, chat template)
MODEL_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken", "*.py"]


def _hf_download(repo_id: str, revision: str | None, local_dir: Path) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=repo_id, revision=revision, local_dir=str(local_dir),
                                  allow_patterns=MODEL_PATTERNS))


def seed_base_model(repo_id: str, uri: str, *, revision: str | None = None,
                    download: Callable[[str, str | None, Path], Path] = _hf_download) -> str:
    """Copy a Hugging Face model repository (`org/name`, optionally `org/name@revision`) to `uri` (s3:// or a
    folder), published with a manifest. Returns "present" when a complete model is already there, else "seeded"."""
    if "@" in repo_id and revision is None:
        repo_id, revision = repo_id.split("@", 1)
    if "/" not in repo_id:
        raise ConfigError(f"base model {repo_id!r}: expected a Hugging Face repo id org/name[@revision]")
    if storage.exists(uri):
        return "present"
    with tempfile.TemporaryDirectory(prefix="seed-") as tmp:
        local = download(repo_id, revision, Path(tmp) / "model")
        if not (Path(local) / "config.json").exists():
            raise ConfigError(f"{repo_id}: no config.json downloaded; is it a transformers model repository?")
        storage.upload(local, uri)
    return "seeded"


def seed_base_models(models: dict[str, str], models_uri: str, **kw: Any) -> dict[str, str]:
    """{name: repo id} → `<models_uri>/<name>` each; returns {name: "seeded" | "present"}."""
    if models and not models_uri:
        raise ConfigError("models_uri is empty: where should the base models go (e.g. s3://fathom/models/base)?")
    return {name: seed_base_model(repo, f"{models_uri.rstrip('/')}/{name}", **kw) for name, repo in models.items()}


def record_no_baseline(baseline_uri: str) -> str:
    """Write the no-baseline record at `baseline_uri` unless a baseline (or the record) is already there: the
    gate then passes the first candidate as an explicit first release. Returns "recorded" | "present" | "skipped"."""
    if not baseline_uri:
        return "skipped"
    if storage.exists(baseline_uri):
        return "present"
    with tempfile.TemporaryDirectory(prefix="nobase-") as tmp:
        (Path(tmp) / NO_BASELINE).write_text("bootstrap: nothing deployed yet; the first retrain is a first release\n")
        storage.upload(tmp, baseline_uri)
    return "recorded"


def deploy_tool_server(deploy_config: dict | str, *, namespace: str = "", api=None) -> list[dict]:
    """Apply the tool server's Deployment, Service, HPA and NetworkPolicy (from the DeployConfig) to the cluster
    (in-cluster service account, or the kubeconfig). Returns the actions taken."""
    import json

    from fathom.deploy.apply import KubeApi, apply_objects
    from fathom.deploy.manifests import DeployConfig, to_dict, tool_server_objects

    raw = json.loads(deploy_config) if isinstance(deploy_config, str) else dict(deploy_config or {})
    if namespace:
        raw["namespace"] = namespace
    cfg = DeployConfig.model_validate(raw)
    api = api or KubeApi.from_environment()
    actions = apply_objects(api, [to_dict(o) for o in tool_server_objects(cfg)], release_id="bootstrap")
    return [a.model_dump() for a in actions]
