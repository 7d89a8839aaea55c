"""Rendered KServe / Kubernetes manifests: serving flags of the released models, validation, drift."""

import copy
import json
from pathlib import Path

import pytest

from fathom.deploy.manifests import (
    DeployConfig,
    ModelServing,
    YarnConfig,
    load_yaml_objects,
    render,
    write_manifests,
)
from fathom.deploy.validate import crd_schema_to_jsonschema, validate_dir, validate_objects, validate_schema

REPO = Path(__file__).resolve().parents[2]


def _flag(args, name):
    return args[args.index(name) + 1]


@pytest.fixture(scope="module")
def rendered():
    return render(DeployConfig())


def _model(rendered, file):
    return rendered[file][0]["spec"]["predictor"]["model"]


def test_policy_isvc(rendered):
    isvc = rendered["policy.yaml"][0]
    pred = isvc["spec"]["predictor"]
    model = pred["model"]
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert model["runtime"] == "fathom-vllm" and model["storageUri"].startswith("s3://")
    assert _flag(model["args"], "--max-model-len") == "40960" and "--hf-overrides" not in model["args"]
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pred["serviceAccountName"] == "fathom-kserve-s3"
    assert pred["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert {v["name"] for v in pred["volumes"]} == {"dshm"}


def test_synthesizer_yarn_is_nested_and_its_context_is_original_times_factor(rendered):
    model = _model(rendered, "synthesizer.yaml")
    assert _flag(model["args"], "--max-model-len") == "81920"  # 40960 × 2: no extrapolated positions
    override = json.loads(_flag(model["args"], "--hf-overrides"))
    assert override["rope_scaling"] == {"factor": 2.0, "original_max_position_embeddings": 40960, "rope_type": "yarn"}
    assert override["rope_parameters"]["rope_theta"] == 1e6
    assert "rope_type" not in override and "factor" not in override
    assert "env" not in model and "name" not in model  # the webhook denies predictor.model.name
    pred = rendered["synthesizer.yaml"][0]["spec"]["predictor"]
    assert pred["timeout"] == 900


def test_sglang_alternative():
    synth = DeployConfig().synthesizer.model_copy(update={"runtime": "sglang"})
    model = render(DeployConfig(synthesizer=synth))["synthesizer.yaml"][0]["spec"]["predictor"]["model"]
    assert model["runtime"] == "fathom-sglang"
    assert _flag(model["args"], "--context-length") == "81920"
    override = json.loads(_flag(model["args"], "--json-model-override-args"))
    assert override["rope_scaling"]["rope_type"] == "yarn" and "rope_type" not in override
    assert "env" not in model


def test_runtimes_have_probes_and_openai_servers(rendered):
    vllm, sglang = rendered["runtimes.yaml"]
    for rt in (vllm, sglang):
        c = rt["spec"]["containers"][0]
        assert c["name"] == "kserve-container" and c["readinessProbe"]["httpGet"]["path"] == "/health"
        # within KServe's 600 s progress deadline of a RawDeployment
        assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] == 600
    assert vllm["spec"]["containers"][0]["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert sglang["spec"]["containers"][0]["command"][-1] == "sglang.launch_server"


def test_tool_server(rendered):
    dep, svc, hpa, netpol = rendered["tool-server.yaml"]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert "replicas" not in dep["spec"]  # the HPA owns it
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and c["securityContext"]["runAsNonRoot"] is True
    assert c["args"][:1] == ["--from-env"] and pod["terminationGracePeriodSeconds"] > int(_flag(c["args"], "--drain-s"))
    egress = netpol["spec"]["egress"]
    public = next(p["ipBlock"] for r in egress for p in r.get("to", []) if p.get("ipBlock", {}).get("cidr") == "0.0.0.0/0")
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(public["except"])
    assert any(p.get("port") == 53 for r in egress for p in r.get("ports", []))
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    env = {e["name"]: e for e in c["env"]}
    assert env["SERPER_API_KEY"]["valueFrom"]["secretKeyRef"] == {"key": "SERPER_API_KEY", "name": "fathom-web-keys",
                                                                  "optional": False}
    assert env["JINA_API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert env["FATHOM_TOOLS_QUERY_LLM"]["value"] == (
        "http://fathom-synthesizer-predictor.fathom.svc.cluster.local/v1#fathom-synthesizer")
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_tool_server_image_registry_from_environment(monkeypatch):
    monkeypatch.setenv("FATHOM_IMAGE_REGISTRY", "registry.example.com/team/")
    assert DeployConfig().tool_server.image.startswith("registry.example.com/team/fathom-tools:")


def test_config_errors():
    with pytest.raises(ValueError, match="exceeds the YaRN context"):
        ModelServing(name="s", storage_uri="s3://b/m", max_model_len=131072, yarn=YarnConfig())
    with pytest.raises(ValueError, match="mutable alias 'latest'"):
        ModelServing(name="s", storage_uri="s3://b/models/s/latest", max_model_len=1)
    canary = DeployConfig().policy.model_copy(update={"canary_traffic_percent": 10})
    with pytest.raises(ValueError, match="canary_traffic_percent needs deployment_mode Serverless"):
        DeployConfig(policy=canary)
    assert DeployConfig(policy=canary, deployment_mode="Serverless").serverless
    with pytest.raises(ValueError, match="progress deadline"):
        DeployConfig(startup_timeout_s=1800)
    with pytest.raises(ValueError, match="DNS-1035"):
        ModelServing(name="Fathom_Search", storage_uri="s3://b/m", max_model_len=1)
    with pytest.raises(ValueError, match="storage_uri"):
        ModelServing(name="a", storage_uri="/local/path", max_model_len=1)
    with pytest.raises(ValueError, match="unique"):
        DeployConfig(synthesizer=DeployConfig().policy)


def test_rendered_release_is_valid(rendered):
    assert validate_objects([o for objs in rendered.values() for o in objs]) == []


def test_serverless_release_is_valid_and_has_a_progress_deadline():
    cfg = DeployConfig(deployment_mode="Serverless", startup_timeout_s=1200,
                       policy=DeployConfig().policy.model_copy(update={"canary_traffic_percent": 10}))
    r = render(cfg)
    isvc = r["policy.yaml"][0]
    assert isvc["metadata"]["annotations"]["serving.knative.dev/progress-deadline"] == "1260s"
    assert validate_objects([o for objs in r.values() for o in objs]) == []


def test_validator_catches_mistakes(rendered):
    isvc = copy.deepcopy(rendered["policy.yaml"][0])
    model = isvc["spec"]["predictor"]["model"]
    model["storageURI"] = model.pop("storageUri")  # typo
    isvc["spec"]["predictor"]["minReplicas"] = "1"  # wrong type
    model["resources"]["limits"] = {"cpu": 8, "memory": "48Gi"}  # int quantity is fine; GPU is missing
    model["args"] += ["--json-model-override-args", '{"rope_type": "yarn", "factor": 2.0}']  # flat override
    dep = copy.deepcopy(rendered["tool-server.yaml"][0])
    c = dep["spec"]["template"]["spec"]["containers"][0]
    del c["name"]
    c["env"].append({"name": "OTHER_API_KEY", "value": "literal"})
    errors = "\n".join(validate_objects([isvc, dep, *rendered["runtimes.yaml"]]))
    assert "storageURI: unknown field of V1beta1ModelSpec (did you mean storageUri?)" in errors
    assert "minReplicas: expected int" in errors
    assert "limits.cpu" not in errors  # an integer quantity is a valid IntOrString
    assert "no GPU limit" in errors and "top level" in errors
    assert "crd: $.spec.predictor.model: Additional properties are not allowed ('storageURI'" in errors
    assert "`name`, must not be `None`" in errors and "OTHER_API_KEY must come from a Secret" in errors
    assert "fathom-vllm" not in errors  # the runtime reference resolves
    assert "no schema for v9/Nope" in validate_objects(
        [{"apiVersion": "v9", "kind": "Nope", "metadata": {"name": "x"}}])[0]


def test_crd_schema_int_or_string():
    crd = {"type": "object", "properties": {"port": {"x-kubernetes-int-or-string": True, "anyOf": [
        {"type": "integer"}, {"type": "string"}]}, "replicas": {"type": "integer"}},
        "x-kubernetes-preserve-unknown-fields": True}
    schema = crd_schema_to_jsonschema(crd)
    assert "x-kubernetes-preserve-unknown-fields" not in schema
    assert validate_schema({"port": "http", "replicas": 1}, schema) == []
    assert validate_schema({"port": 8080}, schema) == []
    assert validate_schema({"port": 1.5, "replicas": "2"}, schema) == [
        "$.port: 1.5 is not valid under any of the given schemas", "$.replicas: '2' is not of type 'integer'"]


def test_vendored_crd_is_used_and_a_missing_one_fails(tmp_path, rendered):
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
              "properties": {"spec": {"type": "object", "required": ["transformer"],
                                      "x-kubernetes-preserve-unknown-fields": True}}}
    (tmp_path / "inferenceservices.yaml").write_text(json.dumps(
        {"spec": {"versions": [{"name": "v1beta1", "storage": True, "schema": {"openAPIV3Schema": schema}}]}}))
    errors = validate_objects(rendered["policy.yaml"], crd_dir=tmp_path, rules=False)
    assert errors == ["InferenceService/fathom-search: crd: $.spec: 'transformer' is a required property"]
    missing = validate_objects(rendered["runtimes.yaml"][:1], crd_dir=tmp_path, rules=False)
    assert missing and "no CRD schema vendored for ServingRuntime" in missing[0]


def test_write_and_validate_dir(tmp_path):
    paths = write_manifests(DeployConfig(), tmp_path)
    assert {p.name for p in paths} >= {"policy.yaml", "runtimes.yaml", "tool-server.yaml", "secrets.template.yaml"}
    assert validate_dir(tmp_path) == []
    objs = load_yaml_objects(tmp_path / "tool-server.yaml")
    assert [o["kind"] for o in objs] == ["Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy"]


def test_committed_manifests_match_the_code():
    """manifests/rendered is a build output: regenerate with `fathom deploy render --out manifests/rendered`."""
    for name, objs in render(DeployConfig()).items():
        assert load_yaml_objects(REPO / "manifests" / "base" / "rendered" / name) == objs, name
    assert validate_dir(REPO / "manifests" / "base" / "rendered") == []
    example = DeployConfig.load(REPO / "manifests" / "deploy-config.example.yaml")
    assert example == DeployConfig()
