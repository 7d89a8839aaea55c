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


@pytest.fixture
def synth_home(tmp_path, monkeypatch, embedded_model_dir):
    from fathom.llm import embedded

    monkeypatch.setattr(embedded, "models_dir", lambda: tmp_path / "models")
    monkeypatch.setattr(embedded, "prepare_embedded", lambda force=False: embedded_model_dir)
    calls = []

    def fake_train(spec):  # the real SFT is ~24 min on 2 cores; the corpus before it is real
        calls.append((spec, [json.loads(line) for line in spec.data.read_text().splitlines()]))
        final = spec.out_dir / "final"
        final.mkdir(parents=True)
        for f in embedded_model_dir.iterdir():
            if f.is_file():
                shutil.copy2(f, final / f.name)
        return {"final": str(final), "steps": 1}

    import fathom.sft.trainer as tr

    monkeypatch.setattr(tr, "train_synthesizer", fake_train)
    return embedded, calls


def test_the_synthesizer_is_trained_on_a_real_world_corpus_and_reused_until_its_recipe_changes(synth_home,
                                                                                              monkeypatch):
    from fathom.sftdata.config import ReportFilterConfig
    from fathom.sftdata.filters import check_report
    from fathom.synth import parse_report

    embedded, calls = synth_home
    path = embedded.prepare_synthesizer()
    spec, rows = calls[0]
    assert len(calls) == 1 and embedded.is_prepared(path) and spec.preset == "embedded"
    corpus, _ = embedded.synth_recipe()
    assert len(rows) >= corpus.n // 2  # the world source accepts most briefs
    for r in rows[:5]:  # each row: the synthesizer's prompt, the teacher's cited plan-then-write report
        rep = parse_report(r["messages"][-1]["content"], set(r["trace_urls"]))
        assert check_report(rep, ReportFilterConfig()) == [] and rep.unsupported_urls == []
    record = json.loads((path / "synthesizer.json").read_text())
    assert record["fingerprint"] == embedded.synth_fingerprints(path)[1] and record["corpus"]["accepted"] == len(rows)
    assert embedded.resolve_local_model(embedded.EMBEDDED_SYNTH) == path
    assert not (path.parent / f"{embedded.EMBEDDED_SYNTH}.work").exists()  # the work folder is cleaned up

    assert embedded.prepare_synthesizer() == path and len(calls) == 1  # same recipe: reused
    monkeypatch.setattr(embedded, "SYNTH_RECIPE_VERSION", "synth-next")  # the teacher changed
    embedded.prepare_synthesizer()
    assert len(calls) == 2


def test_an_unprepared_synthesizer_is_a_clear_error(synth_home):
    from fathom.errors import ConfigError

    embedded, _ = synth_home
    with pytest.raises(ConfigError, match="--prepare-synthesizer"):
        embedded.resolve_local_model(embedded.EMBEDDED_SYNTH)


def test_the_synthesizer_fingerprint_does_not_depend_on_where_the_checkout_is(tmp_path, monkeypatch,
                                                                             embedded_model_dir):
    """A fresh clone elsewhere with the same FATHOM_HOME reuses the prepared synthesizer: the recipe's files count
    by their bytes, not their paths (a path in the fingerprint made the clone's set-up prepare it again, 24 min)."""
    from fathom.llm import embedded

    monkeypatch.setattr(embedded, "prepare_embedded", lambda force=False: embedded_model_dir)
    corpus, preset = embedded.synth_recipe()
    here = embedded.synth_fingerprints()[1]
    clone = tmp_path / "clone"
    clone.mkdir()
    moved = corpus.model_copy(update={k: clone / getattr(corpus, k).name for k in ("seeds_path", "themes_path")})
    for k in ("seeds_path", "themes_path"):
        shutil.copy2(getattr(corpus, k), getattr(moved, k))
    monkeypatch.setattr(embedded, "synth_recipe", lambda: (moved, preset))
    assert embedded.synth_fingerprints()[1] == here
    moved.themes_path.write_text(moved.themes_path.read_text() + "a new theme\n")  # same place, other contents
    assert embedded.synth_fingerprints()[1] != here
