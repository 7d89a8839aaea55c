"""The embedded search policy is prepared again when the warm-start recipe changes: its fingerprint is recorded
beside the weights, a matching one is reused as is, a stale or missing one is re-prepared (the warm start itself
is replaced by a recorder here: the real one is ~40 min on 2 cores and has its own tests)."""

from __future__ import annotations

import json
import shutil

import pytest


@pytest.fixture
def home(tmp_path, monkeypatch, embedded_model_dir):
    from fathom.llm import embedded

    monkeypatch.setattr(embedded, "models_dir", lambda: tmp_path / "models")
    monkeypatch.setattr(embedded, "prepare_embedded", lambda force=False: embedded_model_dir)
    calls = []

    def fake_train(spec):
        calls.append(spec)
        final = spec.out_dir / "final"
        final.mkdir(parents=True)
        for f in embedded_model_dir.iterdir():
            if f.is_file():
                shutil.copy2(f, final / f.name)
        from fathom.rl.warmstart import fingerprint

        return {"final": str(final), "fingerprint": fingerprint(spec, embedded_model_dir)}

    import fathom.rl.warmstart as ws

    monkeypatch.setattr(ws, "train_warmstart", fake_train)
    return embedded, calls


def test_a_prepared_policy_is_reused_until_the_recipe_changes(home, monkeypatch):
    embedded, calls = home
    path = embedded.prepare_policy()
    assert len(calls) == 1 and embedded.is_prepared(path)
    have, want = embedded.policy_fingerprints(path)
    assert have == want and json.loads((path / "warmstart.json").read_text())["fingerprint"] == want

    assert embedded.prepare_policy() == path and len(calls) == 1  # same recipe: reused

    import fathom.rl.warmstart as ws

    monkeypatch.setattr(ws, "WARMSTART_VERSION", "ws-next")  # the expert's turns changed
    assert embedded.policy_fingerprints(path)[0] != embedded.policy_fingerprints(path)[1]
    embedded.prepare_policy()
    assert len(calls) == 2
    have, want = embedded.policy_fingerprints(path)
    assert have == want


def test_a_policy_prepared_before_fingerprints_is_stale(home, caplog):
    embedded, calls = home
    path = embedded.prepare_policy()
    (path / "warmstart.json").unlink()
    assert embedded.policy_fingerprints(path)[0] is None
    with caplog.at_level("WARNING"):
        assert embedded.resolve_local_model(embedded.EMBEDDED_POLICY) == path  # usable, with a warning
    assert "older warm-start recipe" in caplog.text
    embedded.prepare_policy()
    assert len(calls) == 2
