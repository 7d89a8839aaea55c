"""The one place where KFP artifact objects meet the library (which deals in paths and URIs only).

Component bodies import these inside the function (the module ships in the project image with `components`).

- A *large* Model artifact (a trained checkpoint) is passed **by reference**: ``metadata["uri"]`` holds the
  object-store URI of the model folder and the artifact's own folder holds only a small pointer file; without an
  object store (the embedded run) the folder itself holds the model. :func:`model_source` reads either.
- The working folder of a training step (checkpoints, TensorBoard) sits on the task's work volume
  (``FATHOM_WORK_DIR``, a generic ephemeral volume on the cluster, see `components.base.with_work_volume`), else
  next to the artifact.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

POINTER = "MODEL_URI.json"


def model_source(artifact) -> str:
    """Where a Model artifact's model is: its object-store URI when it was passed by reference, else its folder."""
    return str(artifact.metadata.get("uri") or artifact.path)


def work_dir(artifact, name: str = "work") -> Path:
    """The working folder of the step producing `artifact`: under ``FATHOM_WORK_DIR`` when that folder exists (the
    cluster's work volume), else beside the artifact."""
    root = os.environ.get("FATHOM_WORK_DIR", "")
    if root and Path(root).is_dir():
        return Path(root) / name
    return Path(f"{artifact.path}.{name}")


def export_model(model, *, final: str | None, uri: str = "", metadata: dict[str, Any] | None = None) -> None:
    """Fill a Model artifact: by reference when `uri` is set (metadata + a pointer file, no copy), else the
    `final` folder copied in."""
    meta = {k: v for k, v in (metadata or {}).items() if isinstance(v, (int, float, str, bool))}
    model.metadata.update(meta)
    Path(model.path).mkdir(parents=True, exist_ok=True)
    if uri:
        model.metadata["uri"] = uri
        (Path(model.path) / POINTER).write_text(json.dumps({"uri": uri, **meta}, indent=1))
    elif final:
        shutil.copytree(final, model.path, dirs_exist_ok=True)


def export_training(summary: dict[str, Any], model, metrics, curves) -> None:
    """A training stage's summary onto its artifacts: the model (by URI when published), scalar metrics, and the
    HTML page of its plots."""
    from fathom.rl.metrics import plots_html

    export_model(model, final=summary.get("final"), uri=summary.get("uri") or "", metadata=summary)
    for key, value in summary.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(key, float(value))
    for key, value in (summary.get("last") or {}).items():
        if isinstance(value, (int, float)) and "/" not in key:
            metrics.log_metric(f"last_{key}", float(value))
    Path(curves.path).write_text(plots_html([Path(p) for p in summary.get("plots", []) if Path(p).is_file()]))


def launch_of(launcher: str, launch_json: str, run_id: str = ""):
    """The training launcher a step's parameters choose (`fathom.launch.config.LaunchConfig`); `run_id` labels a
    TrainJob for the pipeline's exit handler."""
    from fathom.launch.config import LaunchConfig

    launch = LaunchConfig.from_parameters(launcher, launch_json)
    return launch.model_copy(update={"run_id": run_id}) if run_id else launch
