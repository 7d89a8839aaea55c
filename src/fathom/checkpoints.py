"""Checkpoints that survive the pod: every checkpoint a trainer saves is mirrored to an object-store URI as it is
saved, and a restarted (retried) step resumes from the newest *complete* mirrored checkpoint.

One callback and one resume helper, shared by every trainer of the project (RAPO stages, policy warm start,
synthesizer SFT)::

    metrics_path, checkpoint = prepare_resume(out, resume=True, mirror_uri=uri)   # restore, then cut metrics
    trainer = Trainer(..., callbacks=[MetricsFileCallback(metrics_path), *mirror_callbacks(uri)])
    trainer.train(resume_from_checkpoint=checkpoint)

Layout under the mirror URI::

    URI/checkpoint-N/     one folder per saved checkpoint, published by `fathom.storage.upload`: the files first
                          (under a version prefix), the manifest — the completion marker — last. A checkpoint whose
                          upload was killed has no manifest and is never resumed from.
    URI/run/<file>        the run's side files (metrics.jsonl, the recorded config, cached training data), each a
                          single atomic PUT made *before* the checkpoint's manifest, so they are never older than
                          the newest complete checkpoint (newer rows are cut back on resume).
    URI/final/            the trained model (`publish_final`), the Model artifact points here.

Only the main process mirrors; older mirrored checkpoints beyond the trainer's ``save_total_limit`` are removed
once a newer one is complete.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from transformers import TrainerCallback

log = logging.getLogger(__name__)

#: run files mirrored beside the checkpoints (relative to the output folder), when they exist
SIDE_FILES = ("metrics.jsonl", "rapo_config.json", "data/expert.jsonl")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _join(uri: str, rel: str) -> str:
    return f"{str(uri).rstrip('/')}/{rel}"


def mirrored_checkpoints(uri: str) -> list[int]:
    """Steps of the complete checkpoints mirrored at `uri`, ascending."""
    from fathom import storage

    steps = [int(m.group(1)) for name in storage.published_folders(uri) if (m := _CHECKPOINT.match(name))]
    return sorted(steps)


def local_checkpoints(out: Path) -> list[int]:
    out = Path(out)
    if not out.is_dir():
        return []
    return sorted(int(m.group(1)) for p in out.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))
                  and (p / "trainer_state.json").is_file())


class MirrorCheckpoints(TrainerCallback):
    """After each checkpoint save: upload the run's side files, then ``checkpoint-N/`` (manifest last) to `uri`,
    then drop mirrored checkpoints older than the trainer's ``save_total_limit``. Runs on the main process."""

    def __init__(self, uri: str, side_files: tuple[str, ...] = SIDE_FILES):
        self.uri = str(uri).rstrip("/")
        self.side_files = side_files

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from fathom import storage

        out = Path(args.output_dir)
        name = f"checkpoint-{state.global_step}"
        folder = out / name
        if not folder.is_dir():
            log.warning("checkpoint %s was not saved locally: nothing to mirror", folder)
            return
        for rel in self.side_files:
            if (out / rel).is_file():
                storage.upload(out / rel, _join(self.uri, f"run/{rel}"))
        storage.upload(folder, _join(self.uri, name))
        log.info("mirrored %s to %s", folder, _join(self.uri, name))
        keep = args.save_total_limit
        if keep and keep > 0:
            for step in mirrored_checkpoints(self.uri)[:-keep]:
                storage.remove(_join(self.uri, f"checkpoint-{step}"))


def mirror_callbacks(uri: str | None) -> list[TrainerCallback]:
    """``[MirrorCheckpoints(uri)]``, or nothing without a URI."""
    return [MirrorCheckpoints(uri)] if uri else []


def restore_checkpoint(out: Path, uri: str, side_files: tuple[str, ...] = SIDE_FILES) -> int | None:
    """Bring the newest complete mirrored checkpoint at `uri` into `out` (unless `out` already holds it or a newer
    one), and the side files `out` lacks. Returns the step restored, or None."""
    from fathom import storage

    out = Path(out)
    remote = mirrored_checkpoints(uri)
    if not remote:
        return None
    step = remote[-1]
    local = local_checkpoints(out)
    if local and local[-1] >= step:
        return None
    storage.download(_join(uri, f"checkpoint-{step}"), out / f"checkpoint-{step}")
    for rel in side_files:
        if not (out / rel).exists() and storage.exists(_join(uri, f"run/{rel}")):
            storage.download(_join(uri, f"run/{rel}"), out / rel)
    log.info("restored checkpoint-%d from %s", step, uri)
    return step


def prepare_resume(out: Path, *, resume: bool, mirror_uri: str | None = None) -> tuple[Path, str | None]:
    """The resume helper of every trainer: restore the newest complete mirrored checkpoint (when `mirror_uri`),
    then `OUT/metrics.jsonl` cut back to the checkpoint to resume from (None: a fresh run, empty metrics)."""
    from fathom.rl.metrics import resume_metrics

    if resume and mirror_uri:
        restore_checkpoint(Path(out), mirror_uri)
    return resume_metrics(Path(out), resume)


def publish_final(final: Path, uri: str | None) -> str:
    """Upload the trained model folder to ``URI/final`` (manifest last) and return that URI; '' without a URI."""
    if not uri:
        return ""
    from fathom import storage

    return storage.upload(final, _join(uri, "final"))
