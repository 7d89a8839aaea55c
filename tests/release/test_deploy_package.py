"""The installable package: every kustomize overlay builds with `kubectl kustomize` and passes every layer of
validation (vendored KServe v0.20.0 CRDs, kubernetes-validate --strict, KServe's ported webhook rules, release
rules); the CLI works from a real shell (subprocess: `import kserve` parses sys.argv); ported rules fire."""

import copy
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fathom.deploy import webhook
from fathom.deploy.manifests import DeployConfig, render
from fathom.deploy.validate import CRD_DIR, kustomizations, kustomize_build, validate_objects

REPO = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(p.name for p in (REPO / "manifests" / "overlays").iterdir() if p.is_dir())
CRD_SHA256 = {  # kserve/kserve v0.20.0 config/crd/full/ (see src/fathom/deploy/crds/README.md)
    "inferenceservices.yaml": "57c3bf13f77de94678bf2ae3748056ec071ad2b9e88d6a28f44fb4710758fcff",
    "servingruntimes.yaml": "380a3e1e1444cef9b8b88819596692728868205a2147dc66423be469a4a7bbb1",
    "clusterservingruntimes.yaml": "c6f6bbb1b4b11afd1e38bd6d7255a8795b86efa2b7d14946ccff9d23592e6846",
}
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None,
                                   reason="kubectl (with built-in kustomize) is not installed: overlays not built")


def _env():
    return {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}


def test_vendored_crds_are_the_pinned_upstream_files():
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in CRD_DIR.glob("*.yaml")} == CRD_SHA256


def test_overlays_exist():
    assert {"dev", "prod"} <= set(OVERLAYS)
    assert [p.name for p in kustomizations(REPO / "manifests")] == OVERLAYS


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_and_validates(overlay):
    objs = kustomize_build(REPO / "manifests" / "overlays" / overlay)
    kinds = {o["kind"] for o in objs}
    assert {"Namespace", "InferenceService", "ServingRuntime", "Deployment", "NetworkPolicy", "Role",
            "RoleBinding", "ServiceAccount", "HorizontalPodAutoscaler"} <= kinds
    assert validate_objects(objs) == []
    modes = {o["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] for o in objs
             if o["kind"] == "InferenceService"}
    assert modes == ({"Serverless"} if overlay == "prod" else {"RawDeployment"})
    if overlay == "dev":
        secrets = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Secret"}
        assert {"fathom-s3", "fathom-llm-keys", "fathom-web-keys"} <= set(secrets)
        assert {"endpoint", "access_key", "secret_key", "secure", "region", "AWS_ACCESS_KEY_ID"} <= set(
            secrets["fathom-s3"]["data"])
        assert {"minio"} <= {o["metadata"]["name"] for o in objs if o["kind"] == "Deployment"}


def test_secret_templates_cover_every_referenced_secret():
    """Every Secret a pipeline step or the release references has a template."""
    from pipelines.data import S3_ENV, S3_SECRET
    from pipelines.train import SECRETS

    templates = {s["metadata"]["name"]: s for s in render(DeployConfig())["secrets.template.yaml"]}
    assert set(S3_ENV) <= set(templates[S3_SECRET]["stringData"])
    for name, mapping in SECRETS.items():
        assert set(mapping) <= set(templates[name]["stringData"])
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(templates["fathom-s3"]["stringData"])
    assert "SERPER_API_KEY" in templates["fathom-web-keys"]["stringData"]


@needs_kubectl
def test_validate_cli_from_a_real_shell():
    out = subprocess.run([sys.executable, "-m", "fathom.cli", "deploy", "validate", str(REPO / "manifests")],
                         capture_output=True, text=True, env=_env(), timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert "valid" in out.stderr and "overlays/prod" in out.stderr


def test_render_and_apply_with_config_from_a_real_shell(tmp_path):
    """`import kserve` parses sys.argv; `--config` used to be read as kserve's `--configure_logging` (exit 2)."""
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text("namespace: staging\npolicy:\n  name: fathom-search\n  storage_uri: s3://fathom/models/s/v7\n"
                   "  max_model_len: 8192\nsynthesizer: null\n")
    out = subprocess.run([sys.executable, "-m", "fathom.cli", "deploy", "render", "--config", str(cfg), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, env=_env(), timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert "namespace: staging" in (tmp_path / "out" / "policy.yaml").read_text()
    env = {**_env(), "KUBECONFIG": str(tmp_path / "no-such-kubeconfig")}
    out = subprocess.run([sys.executable, "-m", "fathom.cli", "deploy", "apply", "--config", str(cfg), "--no-wait"],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 1 and "no cluster configured" in out.stderr, out.stderr  # parsed, validated, no cluster


# ------------------------------------------------------------------------------------------ ported webhook rules
@pytest.fixture(scope="module")
def release():
    return [o for objs in render(DeployConfig()).values() for o in objs if o["kind"] != "Secret"]


def _isvc(release):
    return copy.deepcopy(next(o for o in release if o["kind"] == "InferenceService"))


def test_webhook_rules_cite_upstream_files():
    mirror = {webhook.ISVC_VALIDATION, webhook.COMPONENT, webhook.ENV_POLICY, webhook.RUNTIME_WEBHOOK,
              webhook.CONSTANTS, webhook.KSVC_RECONCILER}
    assert {r.source for r in webhook.ISVC_RULES + webhook.RUNTIME_RULES} <= mirror
    assert all(s.startswith("pkg/") and s.endswith(".go") for s in mirror)


@pytest.mark.parametrize("mutate, message", [
    (lambda o: o["spec"]["predictor"]["model"].update(name="kserve-container"),
     "the 'name' field is not allowed in standard predictor"),
    (lambda o: o["spec"]["predictor"].update(canaryTrafficPercent=10), "canaryTrafficPercent needs deployment mode"),
    (lambda o: o["spec"]["predictor"]["model"].setdefault("env", []).append({"name": "PYTHONPATH", "value": "/x"}),
     "setting PYTHONPATH in container"),
    (lambda o: o["spec"]["predictor"].update(minReplicas=3, maxReplicas=2), "minReplicas cannot be greater"),
    (lambda o: o["metadata"]["annotations"].update({"serving.kserve.io/deploymentMode": "Raw"}), "is not one of"),
    (lambda o: o["metadata"]["annotations"].update({"serving.kserve.io/autoscalerClass": "kpa"}),
     "not a supported autoscaler class"),
    (lambda o: (o["metadata"]["annotations"].update({"serving.kserve.io/deploymentMode": "Serverless"}),
                o["spec"]["predictor"].update(deploymentStrategy={"type": "Recreate"})),
     "deploymentStrategy is only supported for raw deployment mode"),
])
def test_webhook_rule_fires(release, mutate, message):
    isvc = _isvc(release)
    mutate(isvc)
    problems = webhook.webhook_problems([isvc])
    assert any(message in p and "kserve/kserve@v0.20.0 pkg/" in p for p in problems), problems


def test_runtime_priority_rules(release):
    runtimes = copy.deepcopy([o for o in release if o["kind"] == "ServingRuntime"])
    assert webhook.webhook_problems(runtimes) == []
    for rt in runtimes:
        rt["spec"]["supportedModelFormats"][0]["priority"] = 1
    assert any("same priority assigned for the model format fathom-hf" in p
               for p in webhook.webhook_problems(runtimes))


def test_release_rules_catch_context_and_deadline(release):
    isvc = _isvc(release)
    args = isvc["spec"]["predictor"]["model"]["args"]
    args += ["--hf-overrides", ('{"rope_scaling": {"rope_type": "yarn", "factor": 2.0, '
                                '"original_max_position_embeddings": 8192}}')]
    del isvc["spec"]["predictor"]["timeout"]
    runtimes = copy.deepcopy([o for o in release if o["kind"] == "ServingRuntime"])
    runtimes[0]["spec"]["containers"][0]["startupProbe"]["failureThreshold"] = 180
    errors = "\n".join(validate_objects([isvc, *runtimes]))
    assert "exceeds the YaRN context original×factor = 16384" in errors
    assert "no predictor timeout" in errors
    assert "startup probe allows 1800s, more than the progress deadline 600s" in errors
