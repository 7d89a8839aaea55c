"""Credentials on every step: walk the compiled IR of every pipeline (`fathom pipeline compile`) and fail when a task
that takes an object-store URI (an input/output/checkpoint/baseline/base-model parameter, an s3:// constant or
default, or a Model artifact, which may carry the URI of its checkpoint) lacks the object-store Secret as env
(kfp-kubernetes `use_secret_as_env`) with every FATHOM_S3_* variable mapped; and that the role keys reach the
steps that call role endpoints."""

import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

#: parameter names that carry an object-store URI (s3://... or a path)
URI_PARAM = re.compile(r"(^|_)(uri|src|base_model|checkpoints?)$")
#: parameter names that carry a role spec (URL#model@KEY_ENV) → the role-keys Secret
ROLE_PARAM = re.compile(r"^(judge|labeller|teacher|query_llm|solvers?|policy|baseline_policy)$")


def _compiled():
    from fathom import pipeline_cli

    return pipeline_cli, sorted(pipeline_cli.discover())


@pytest.fixture(scope="module")
def irs(tmp_path_factory):
    pipeline_cli, names = _compiled()
    out = tmp_path_factory.mktemp("ir")
    result = {}
    for name in names:
        docs = list(yaml.safe_load_all(pipeline_cli.compile_pipeline(name, out).read_text()))
        platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
        result[name] = (docs[0], platform)
    return result


def _defaults(spec, comp_name):
    comp = spec["root"] if comp_name == "root" else spec["components"][comp_name]
    params = comp.get("inputDefinitions", {}).get("parameters", {})
    return {k: v.get("defaultValue") for k, v in params.items()}


def leaf_tasks(spec):
    """[(task name, component spec, task spec, enclosing DAG component name)] of every container task."""
    out = []

    def walk(comp_name):
        dag = (spec["root"] if comp_name == "root" else spec["components"][comp_name])["dag"]["tasks"]
        for tname, task in dag.items():
            ref = task["componentRef"]["name"]
            comp = spec["components"][ref]
            if "dag" in comp:
                walk(ref)
            else:
                out.append((tname, comp, task, comp_name))

    walk("root")
    return out


def takes_object_store_uri(spec, comp, task, parent) -> list[str]:
    """Why this task touches the object store (empty: it does not)."""
    why = []
    params = comp.get("inputDefinitions", {}).get("parameters", {})
    for pname in params:
        if URI_PARAM.search(pname):
            why.append(f"parameter {pname}")
    for pname, src in task.get("inputs", {}).get("parameters", {}).items():
        const = src.get("runtimeValue", {}).get("constant")
        if isinstance(const, str) and const.startswith("s3://"):
            why.append(f"constant {pname}={const}")
        upstream = src.get("componentInputParameter")
        if upstream and str(_defaults(spec, parent).get(upstream) or "").startswith("s3://"):
            why.append(f"{pname} ← default of {upstream}")
    for aname, art in comp.get("inputDefinitions", {}).get("artifacts", {}).items():
        if art.get("artifactType", {}).get("schemaTitle") == "system.Model":
            why.append(f"Model artifact {aname}")
    return why


def _secret_env(platform, executor) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for entry in platform.get(executor, {}).get("secretAsEnv", []):
        name = entry["secretName"] if "secretName" in entry else entry.get("secretNameParameter", {}).get(
            "runtimeValue", {}).get("constant")
        found.setdefault(name, set()).update(k["envVar"] for k in entry["keyToEnv"])
    return found


def test_every_pipeline_compiled(irs):
    assert {"data", "evaluate", "release", "retrain", "train"} <= set(irs)


@pytest.mark.parametrize("name", _compiled()[1])
def test_object_store_secret_on_every_task_that_takes_a_uri(irs, name):
    from components.base import S3_ENV, S3_SECRET

    spec, platform = irs[name]
    missing = []
    checked = 0
    for tname, comp, task, parent in leaf_tasks(spec):
        why = takes_object_store_uri(spec, comp, task, parent)
        if not why:
            continue
        checked += 1
        env = _secret_env(platform, comp["executorLabel"]).get(S3_SECRET, set())
        lacking = set(S3_ENV.values()) - env
        if lacking:
            missing.append(f"{tname} ({', '.join(why)}): lacks {sorted(lacking)}")
    assert not missing, f"pipeline {name}: tasks that take an object-store URI without its credentials:\n" + \
        "\n".join(missing)
    assert checked or name == "data", name


@pytest.mark.parametrize("name", _compiled()[1])
def test_role_keys_on_every_task_that_calls_a_role(irs, name):
    from components.base import LLM_ENV, LLM_SECRET

    spec, platform = irs[name]
    missing = []
    for tname, comp, task, parent in leaf_tasks(spec):
        params = comp.get("inputDefinitions", {}).get("parameters", {})
        if not any(ROLE_PARAM.match(p) for p in params):
            continue
        env = _secret_env(platform, comp["executorLabel"]).get(LLM_SECRET, set())
        if set(LLM_ENV.values()) - env:
            missing.append(tname)
    assert not missing, f"pipeline {name}: tasks with a role parameter but no role keys: {missing}"


def test_secure_and_region_mapped_and_s3_secret_optional(irs):
    """FATHOM_S3_SECURE (a MinIO over plain HTTP) and the region are mapped; the Secret is optional so that a
    web-identity (IRSA) setup without static keys still starts its pods."""
    from components.base import S3_SECRET

    spec, platform = irs["retrain"]
    entries = [e for cfg in platform.values() for e in cfg.get("secretAsEnv", []) if e.get("secretName") == S3_SECRET]
    assert entries
    for e in entries:
        envs = {k["envVar"] for k in e["keyToEnv"]}
        assert {"FATHOM_S3_SECURE", "FATHOM_S3_REGION", "FATHOM_S3_ENDPOINT"} <= envs
        assert e.get("optional") is True


def test_the_walk_catches_a_missing_secret(tmp_path):
    """The walk itself: a pipeline whose step takes an s3:// URI without the Secret is reported."""
    from kfp import compiler, dsl

    from components.base import S3_SECRET
    from components.data import publish_dataset, decontaminate  # noqa: F401

    @dsl.component(base_image="python:3.11")
    def reads(uri: str) -> str:
        return uri

    @dsl.pipeline(name="bad")
    def bad(where: str = "s3://b/x"):
        reads(uri=where)

    out = tmp_path / "bad.yaml"
    compiler.Compiler().compile(bad, str(out))
    docs = list(yaml.safe_load_all(out.read_text()))
    spec = docs[0]
    [(tname, comp, task, parent)] = leaf_tasks(spec)
    assert takes_object_store_uri(spec, comp, task, parent)
    assert S3_SECRET not in _secret_env({}, comp["executorLabel"])
