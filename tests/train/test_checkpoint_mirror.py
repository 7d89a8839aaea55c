"""Retries that resume: every checkpoint is mirrored to the object store as it is saved (files, then the manifest
as the completion marker), and a rerun in a fresh working folder (a new pod) resumes from the newest *complete*
mirrored checkpoint with the same next batch. S3 is a moto server on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from rapo_testkit import tiny_model_dir

from fathom import storage
from fathom.checkpoints import MirrorCheckpoints, mirrored_checkpoints, prepare_resume, restore_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def s3(s3_env):
    return s3_env


def _fake_checkpoint(out: Path, step: int, metrics_rows: int | None = None) -> Path:
    ck = out / f"checkpoint-{step}"
    ck.mkdir(parents=True)
    (ck / "model.safetensors").write_bytes(os.urandom(64))
    (ck / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    rows = metrics_rows if metrics_rows is not None else step
    (out / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n"
                                               for s in range(1, rows + 1)))
    return ck


def _save(cb, out: Path, step: int, limit: int | None = 2):
    args = SimpleNamespace(output_dir=str(out), save_total_limit=limit)
    cb.on_save(args, SimpleNamespace(global_step=step, is_world_process_zero=True), None)


def test_mirror_keeps_the_newest_complete_checkpoints_and_restores_the_newest(s3, tmp_path):
    uri = "s3://ckpt-unit/run-1/rapo-stage1"
    out = tmp_path / "pod-1"
    cb = MirrorCheckpoints(uri)
    for step in (1, 2, 3):
        _fake_checkpoint(out, step)
        _save(cb, out, step)
    assert mirrored_checkpoints(uri) == [2, 3]  # save_total_limit=2: checkpoint-1 dropped once 3 was complete
    # a killed upload of checkpoint-4: its files are there, its manifest (the completion marker) is not
    ck4 = _fake_checkpoint(out, 4)
    storage.write_bytes(f"{uri}/checkpoint-4/_v/x/model.safetensors", (ck4 / "model.safetensors").read_bytes())
    storage.write_text(f"{uri}/run/metrics.jsonl", (out / "metrics.jsonl").read_text())  # side files go first
    assert mirrored_checkpoints(uri) == [2, 3]

    pod2 = tmp_path / "pod-2"  # a retried step: a fresh pod, an empty working folder
    metrics, checkpoint = prepare_resume(pod2, resume=True, mirror_uri=uri)
    assert checkpoint == str(pod2 / "checkpoint-3")
    assert (pod2 / "checkpoint-3" / "model.safetensors").read_bytes() == (out / "checkpoint-3" /
                                                                           "model.safetensors").read_bytes()
    assert [json.loads(r)["step"] for r in metrics.read_text().splitlines()] == [1, 2, 3]  # step 4 cut back
    assert restore_checkpoint(pod2, uri) is None  # the working folder already holds the newest: nothing fetched


def test_local_checkpoint_uri_and_no_uri(tmp_path):
    """A folder as checkpoint URI works the same; without a URI nothing is mirrored or restored."""
    uri = str(tmp_path / "mirror")
    out = tmp_path / "pod-1"
    cb = MirrorCheckpoints(uri)
    for step in (5, 10):
        _fake_checkpoint(out, step)
        _save(cb, out, step, limit=1)
    assert mirrored_checkpoints(uri) == [10]
    _, checkpoint = prepare_resume(tmp_path / "pod-2", resume=True, mirror_uri=uri)
    assert checkpoint.endswith("checkpoint-10")
    assert prepare_resume(tmp_path / "pod-3", resume=True, mirror_uri=None)[1] is None


# ---------------------------------------------------------------------------------------------------------------
# a real training subprocess killed after checkpoint N, rerun in a fresh folder: it continues at N+1

KILL_AFTER = 2
STEPS = 4
_CHILD = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path

    from fathom.checkpoints import MirrorCheckpoints
    from fathom.sft.trainer import sft_stage

    work, model, data, uri, overrides, kill_after = sys.argv[1:7]
    inner = MirrorCheckpoints.on_save

    def on_save(self, args, state, control, **kw):
        inner(self, args, state, control, **kw)
        if state.global_step == int(kill_after):  # checkpoint N is mirrored: the pod dies
            os.kill(os.getpid(), signal.SIGKILL)

    MirrorCheckpoints.on_save = on_save
    sft_stage(Path(work), preset="cpu-smoke", base_model=model, data=Path(data), overrides=json.loads(overrides),
              checkpoint_uri=uri)
""")


def _rows(work: Path) -> dict[int, dict]:
    rows = [json.loads(r) for r in (work / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss" in r]
    assert len(steps) == len(set(steps)), f"a step logged twice: {steps}"
    return {r["step"]: r for r in rows if "loss" in r}


@pytest.mark.slow  # trains in subprocesses (a kill, a resume, an uninterrupted reference)
def test_killed_training_resumes_from_the_mirror_with_the_same_next_batch(s3, tmp_path, embedded_model_dir,
                                                                          monkeypatch):
    from fathom.rl.data import write_jsonl
    from fathom.sft.trainer import sft_stage, tiny_sft_rows

    model = tiny_model_dir(tmp_path, embedded_model_dir)
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(tiny_sft_rows(8), data / "sft.jsonl")
    overrides = {"max_steps": STEPS, "save_steps": 1, "save_total_limit": 2, "max_length": 256, "report_to": [],
                 "gradient_checkpointing": False, "learning_rate": 1e-3, "warmup_steps": 0}

    # the reference: one uninterrupted run
    ref = sft_stage(tmp_path / "ref", preset="cpu-smoke", base_model=str(model), data=data, overrides=overrides,
                    checkpoint_uri="s3://ckpt-e2e/ref")
    assert ref["steps"] == STEPS and ref["uri"] == "s3://ckpt-e2e/ref/final"
    expected = _rows(tmp_path / "ref")

    # attempt 1: a real subprocess, killed right after checkpoint N was mirrored
    uri = "s3://ckpt-e2e/run/synthesizer-sft"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "attempt-1"), str(model), str(data), uri,
                           json.dumps(overrides), str(KILL_AFTER)], env=env, capture_output=True, text=True,
                          timeout=1500, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert mirrored_checkpoints(uri) == [1, 2]
    assert not storage.exists(f"{uri}/final")

    # attempt 2: the rerun in a fresh working folder (a new pod) continues at N+1
    from fathom import checkpoints

    resumed_from = []
    real = checkpoints.prepare_resume

    def spy(out, **kw):
        result = real(out, **kw)
        resumed_from.append(result[1])
        return result

    monkeypatch.setattr(checkpoints, "prepare_resume", spy)
    got = sft_stage(tmp_path / "attempt-2", preset="cpu-smoke", base_model=str(model), data=data,
                    overrides=overrides, checkpoint_uri=uri)
    assert resumed_from == [str(tmp_path / "attempt-2" / f"checkpoint-{KILL_AFTER}")]
    state = json.loads((tmp_path / "attempt-2" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    assert got["steps"] == STEPS and state["global_step"] == STEPS
    rows = _rows(tmp_path / "attempt-2")
    assert sorted(rows) == list(range(1, STEPS + 1))  # 1..N restored from the mirror, N+1.. trained now
    for step in range(1, STEPS + 1):  # the same batches: equal losses at N+1 and after
        assert rows[step]["loss"] == pytest.approx(expected[step]["loss"], rel=1e-4, abs=1e-5), step
    assert rows[KILL_AFTER + 1]["grad_norm"] == pytest.approx(expected[KILL_AFTER + 1]["grad_norm"], rel=1e-3)
    assert got["uri"] == f"{uri}/final" and storage.exists(got["uri"])
    assert mirrored_checkpoints(uri) == [STEPS - 1, STEPS]
    # the base model is not re-uploaded: only checkpoints, run files and the final model under the URI
    assert set(storage.published_folders(uri)) == {f"checkpoint-{STEPS - 1}", f"checkpoint-{STEPS}", "final"}


_RAPO_CHILD = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path

    from rapo_testkit import make_trainer
    from transformers import TrainerCallback

    from fathom.checkpoints import MirrorCheckpoints, mirror_callbacks, prepare_resume
    from fathom.rl.rewards import AnswerJudge

    model, template, out, uri, steps, kill_after, log = sys.argv[1:8]


    class EvenJudge(AnswerJudge):
        async def judge_many(self, items):
            return [i % 2 == 0 for i, _ in enumerate(list(items))]


    class Batches(TrainerCallback):  # the prompt ids of each step, appended as it ends
        def __init__(self, trainer):
            self.trainer = trainer

        def on_step_end(self, args, state, control, **kw):
            with open(log, "a") as f:
                f.write(json.dumps([state.global_step, self.trainer.last_batch_pids]) + "\\n")


    if int(kill_after):
        inner = MirrorCheckpoints.on_save

        def on_save(self, args, state, control, **kw):
            inner(self, args, state, control, **kw)
            if state.global_step == int(kill_after):
                os.kill(os.getpid(), signal.SIGKILL)

        MirrorCheckpoints.on_save = on_save
    _, checkpoint = prepare_resume(Path(out), resume=True, mirror_uri=uri)
    trainer, engine = make_trainer(Path(model), Path(out), Path(template), judge=EvenJudge(None),
                                   max_steps=int(steps), save_total_limit=2)
    for cb in [Batches(trainer), *mirror_callbacks(uri)]:
        trainer.add_callback(cb)
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    finally:
        engine.close()
    print(json.dumps({"resumed_from": checkpoint}))
""")


def _batches(path: Path) -> dict[int, list[str]]:
    return {step: pids for step, pids in (json.loads(r) for r in path.read_text().splitlines())}


@pytest.mark.slow
@pytest.mark.longest
def test_killed_rapo_training_resumes_with_the_same_next_prompts(s3, tmp_path, embedded_model_dir):
    """RAPO (schedule, pruned set and replay buffer in rapo_state.json) through the same callback and helper: the
    rerun after a kill at checkpoint N draws the prompts the uninterrupted run drew at N+1."""
    from rapo_testkit import template_file

    model, template = tiny_model_dir(tmp_path, embedded_model_dir), template_file(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), str(ROOT / "tests" / "train"),
                                                         os.environ.get("PYTHONPATH", "")])}

    def run(out: str, uri: str, kill_after: int, log: Path):
        return subprocess.run([sys.executable, "-c", _RAPO_CHILD, str(model), str(template), str(tmp_path / out), uri,
                               "3", str(kill_after), str(log)], env=env, capture_output=True, text=True,
                              timeout=1500, check=False)

    ref = run("ref", "s3://ckpt-rapo/ref", 0, tmp_path / "ref.jsonl")
    assert ref.returncode == 0, ref.stderr[-3000:]
    uri = "s3://ckpt-rapo/run/rapo-stage1"
    first = run("attempt-1", uri, 1, tmp_path / "attempt-1.jsonl")
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert mirrored_checkpoints(uri) == [1]
    second = run("attempt-2", uri, 0, tmp_path / "attempt-2.jsonl")  # a fresh folder: a new pod
    assert second.returncode == 0, second.stderr[-3000:]
    assert json.loads(second.stdout.strip().splitlines()[-1])["resumed_from"].endswith("checkpoint-1")
    expected, got = _batches(tmp_path / "ref.jsonl"), _batches(tmp_path / "attempt-2.jsonl")
    assert sorted(got) == [2, 3]  # continues at N+1
    assert got[2] == expected[2] and got[3] == expected[3]  # the same next prompts
    assert expected[2] != expected[1] or expected[3] != expected[2]  # (the schedule does move)
    assert mirrored_checkpoints(uri) == [2, 3]
    manifest = json.loads(storage.read_text(f"{uri}/checkpoint-3/{storage.MANIFEST}"))
    assert {"rapo_state.json", "optimizer.pt", "rng_state.pth"} <= {f["path"] for f in manifest["files"]}
