"""The bootstrap library: base models seeded once from a (fake) Hugging Face download, the no-baseline record
that the gate reads as a first release, both idempotent."""

import json
from pathlib import Path

import pytest

from fathom.bootstrap import record_no_baseline, seed_base_models
from fathom.errors import ConfigError


def fake_download(calls):
    def download(repo_id, revision, local_dir: Path) -> Path:
        calls.append((repo_id, revision))
        local_dir.mkdir(parents=True)
        (local_dir / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
        (local_dir / "model.safetensors").write_bytes(b"\0" * 16)
        return local_dir
    return download


def test_seed_base_models_once(tmp_path):
    calls = []
    dest = tmp_path / "models"
    done = seed_base_models({"qwen3-4b": "Qwen/Qwen3-4B@main"}, str(dest), download=fake_download(calls))
    assert done == {"qwen3-4b": "seeded"} and calls == [("Qwen/Qwen3-4B", "main")]
    assert (dest / "qwen3-4b" / "config.json").exists()
    again = seed_base_models({"qwen3-4b": "Qwen/Qwen3-4B"}, str(dest), download=fake_download(calls))
    assert again == {"qwen3-4b": "present"} and len(calls) == 1  # not downloaded again
    with pytest.raises(ConfigError, match="repo id"):
        seed_base_models({"x": "not-a-repo"}, str(dest / "y"), download=fake_download(calls))
    with pytest.raises(ConfigError, match="models_uri"):
        seed_base_models({"x": "a/b"}, "")


def test_no_baseline_record_is_a_first_release(tmp_path):
    from fathom.evaluate.stages import baseline_stage, gate_stage

    uri = str(tmp_path / "retrain" / "deployed-eval")
    assert record_no_baseline(uri) == "recorded"
    assert record_no_baseline(uri) == "present"  # never overwrites what is there
    assert record_no_baseline("") == "skipped"
    base = tmp_path / "base"
    assert baseline_stage(base, baseline_uri=uri) == "stored"
    assert gate_stage(tmp_path / "candidate", str(base), tmp_path / "gate") is None  # first release
