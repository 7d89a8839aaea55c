"""The run form's settings (`fathom.retrain`): profiles, overrides, roles placed into the stage configs, and the
`validate` step that fails fast with one list of problems."""

import json
import socket
import sys
import types
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from fathom.errors import ConfigError  # noqa: E402
from fathom.retrain import PROFILES, load_profile, resolve, role_values, validate  # noqa: E402


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("name", PROFILES)
def test_profiles_hold_every_setting(name):
    from fathom.retrain import BODY_SETTINGS

    prof = load_profile(name)
    assert set(BODY_SETTINGS) <= set(prof["settings"]), set(BODY_SETTINGS) - set(prof["settings"])
    assert prof["settings"]["cluster"] is prof["cluster"]


def test_cluster_profiles_never_default_to_the_embedded_model():
    for name in ("paper", "smoke"):
        settings = resolve({"profile": name})
        assert "local:smollm2" not in (settings["policy_base_model"], settings["synth_base_model"])
        if name == "paper":
            assert not any(v == "local:smollm2" for v in role_values(settings).values()
                           if v), role_values(settings)


def test_form_overrides_profile_and_places_roles():
    role = "http://judge.example/v1#m@JUDGE_KEY"
    s = resolve({"profile": "paper", "judge": role, "teacher": "http://t.example/v1#t", "solvers": ["http://s/v1#a"],
                 "query_llm": "http://q/v1#q", "n_duetqa": 7, "benchmarks": ["simpleqa"], "namespace": "ns"},
                overrides={"stage1_config_json": {"rapo_epochs": 2.0}, "eval_config_json": {"concurrency": 3}})
    assert s["judge"] == s["duetqa_config"]["judge"] == s["eval_config_json"]["judge"] == role
    assert s["duetqa_config"]["m1"] == s["duetqa_config"]["m3"] == s["sft_config"]["policy"] == "http://s/v1#a"
    assert s["sft_config"]["teacher"] == "http://t.example/v1#t" and s["eval_config_json"]["query_llm"] == "http://q/v1#q"
    assert s["n_duetqa"] == 7 and s["n_sft"] == 2500 and s["benchmarks"] == ["simpleqa"] and s["namespace"] == "ns"
    assert s["stage1_config_json"] == {"rapo_epochs": 2.0}
    assert s["eval_config_json"] == {"concurrency": 3, "judge": role, "query_llm": "http://q/v1#q"}  # replaced
    with pytest.raises(ConfigError, match="unknown settings"):
        resolve({"profile": "paper"}, overrides={"nope": 1})
    with pytest.raises(ConfigError, match="unknown profile"):
        resolve({"profile": "laptop"})
    with pytest.raises(ConfigError, match="solvers"):
        resolve({"profile": "paper", "solvers": ["a", "b"]})


def test_config_uri_overrides_from_a_file(tmp_path):
    cfg = tmp_path / "overrides.yaml"
    cfg.write_text(yaml.safe_dump({"preset": "cpu-smoke", "gate_max_drop": 1.0}))
    s = resolve({"profile": "embedded", "config_uri": str(cfg)})
    assert s["preset"] == "cpu-smoke" and s["gate_max_drop"] == 1.0


def test_embedded_profile_validates_with_no_network():
    assert validate(resolve({"profile": "embedded"}), env={}) == []


def test_validate_lists_everything_missing_for_an_empty_cluster_config():
    """The paper profile on an empty namespace (no Secrets, no roles): one list, every problem in it."""
    settings = resolve({"profile": "paper", "labeller": "local:smollm2"})
    settings["tools_url"] = f"http://127.0.0.1:{_closed_port()}"
    problems = validate(settings, env={}, timeout_s=2)
    text = "\n".join(problems)
    for needle in ("role judge: not set", "role teacher: not set", "role solvers: not set",
                   "role labeller: is the embedded model", "tool server", "FATHOM_S3_ENDPOINT is not set",
                   "object store: no credentials"):
        assert needle in text, (needle, text)


def test_validate_checks_keys_and_endpoints():
    port = _closed_port()
    role = f"http://127.0.0.1:{port}/v1#judge-model@JUDGE_KEY"
    settings = resolve({"profile": "embedded", "judge": role})
    problems = validate(settings, env={}, timeout_s=2)
    assert any("JUDGE_KEY is not set" in p for p in problems), problems
    assert sum(f"127.0.0.1:{port}" in p and "not reachable" in p for p in problems) == 1  # one line per endpoint
    assert validate(settings, env={"JUDGE_KEY": "x"}, probe=False) == []


def test_validate_object_store(monkeypatch, tmp_path):
    """Buckets, base models and the baseline against a real S3 API (moto on loopback)."""
    from moto.server import ThreadedMotoServer

    from fathom import storage

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {"FATHOM_S3_ENDPOINT": f"http://{host}:{port}", "FATHOM_S3_ACCESS_KEY": "k",
               "FATHOM_S3_SECRET_KEY": "s", "FATHOM_S3_REGION": "us-east-1", "FATHOM_S3_RETRIES": "0"}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        settings = resolve({"profile": "smoke"})
        settings["tools_url"] = ""
        problems = validate(settings, env=env)
        assert any("bucket 'fathom' does not exist" in p for p in problems), problems
        model = tmp_path / "model"
        model.mkdir()
        (model / "config.json").write_text("{}")
        storage.upload(model, settings["policy_base_model"])
        problems = validate(settings, env=env)
        assert not any("bucket" in p or "policy_base_model" in p for p in problems), problems
        assert any("baseline s3://fathom/retrain-smoke/deployed-eval" in p for p in problems), problems
        marker = tmp_path / "nobase"
        marker.mkdir()
        (marker / "NO_BASELINE").write_text("first release\n")
        storage.upload(marker, "s3://fathom/retrain-smoke/deployed-eval")
        assert validate(settings, env=env) == []
    finally:
        server.stop()


def test_validate_component_fails_with_one_message(tmp_path):
    from components.retrain import validate_retrain

    report = types.SimpleNamespace(path=str(tmp_path / "report.md"))
    form = dict(profile="paper", policy_base_model="", synth_base_model="", judge="", labeller="", query_llm="",
                teacher="", solvers=[], n_duetqa=0, n_sft=0, benchmarks=[], gate_require="", output_uri="",
                namespace="", config_uri="")
    with pytest.raises(ValueError, match=r"cannot start; fix these \d+ problem") as err:
        validate_retrain.python_func(**form, report=report)
    assert "role judge: not set" in str(err.value) and "role teacher: not set" in str(err.value)
    assert "role judge: not set" in Path(report.path).read_text()
    ok = validate_retrain.python_func(**{**form, "profile": "embedded"}, report=report)
    assert json.loads(ok)["preset"] == "cpu"
