"""A training stage under a launcher other than `inprocess`: the component body builds its spec as before and hands it
here; the result is the same working folder (`summary.json`, `final/`, checkpoints) the in-process run writes.

* ``accelerate`` — `accelerate launch --config_file <zero2|zero3|fsdp|...> --num_processes <GPUs of the pod> -m
  fathom.cli train ...` in the pod; its output is this task's log.
* ``trainjob`` — inputs staged to object storage beside `checkpoint_uri`, a TrainJob whose nodes run
  :mod:`fathom.launch.node` (`fathom train ...` under accelerate/torchrun), node 0 publishes the working folder to
  `checkpoint_uri`, which is then downloaded here.
"""

from __future__ import annotations

import collections
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from fathom.errors import ConfigError, FathomError
from fathom.launch.command import Kind, accelerate_argv, resolved_accelerate_config, torchrun_argv, train_argv
from fathom.launch.config import LaunchConfig

log = logging.getLogger(__name__)


class LaunchError(FathomError):
    """The launched training processes failed; the message carries the tail of their output."""


def spec_argv(kind: Kind, spec, *, out: str | None = None, model: str | None = None, data: str | None = None,
              resume: bool | None = None) -> list[str]:
    """`fathom train <kind> ...` arguments of a SearchTrainSpec / SynthSFTSpec (paths overridable)."""
    return train_argv(kind, out=out or str(spec.out_dir), preset=str(spec.preset), model=model or str(spec.model),
                      data=data if data is not None else (str(spec.data) if getattr(spec, "data", None) else None),
                      stage=int(getattr(spec, "stage", 1)), tools_url=getattr(spec, "tools_url", None),
                      judge=getattr(spec, "judge", "exact"), labeller=getattr(spec, "labeller", "heuristic"),
                      resume=bool(spec.resume if resume is None else resume), overrides=dict(spec.overrides))


def _run_streaming(argv: list[str], *, what: str, tail: int = 60) -> None:
    lines: collections.deque[str] = collections.deque(maxlen=tail)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line.rstrip("\n"))
    rc = proc.wait()
    if rc != 0:
        raise LaunchError(f"{what} exited with code {rc}\n--- last output ---\n" + "\n".join(lines))


def _summary(work: Path) -> dict[str, Any]:
    """The run's summary.json; paths written on another machine (a training node) are moved to this folder."""
    path = work / "summary.json"
    if not path.is_file():
        raise LaunchError(f"the launched training wrote no {path}")
    text = path.read_text()
    final = json.loads(text).get("final")
    old_root = str(Path(final).parent) if final else None
    if old_root and old_root != str(work):
        text = text.replace(json.dumps(old_root)[1:-1], json.dumps(str(work))[1:-1])
        path.write_text(text)
    return json.loads(text)


def run_accelerate(kind: Kind, spec, launch: LaunchConfig) -> dict[str, Any]:
    """`accelerate launch` on all GPUs of this pod (or `num_processes`)."""
    nproc = launch.num_processes
    if not nproc:
        import torch

        nproc = torch.cuda.device_count()
    if nproc < 1:
        raise ConfigError("launcher=accelerate found no GPU in this pod; set num_processes (with "
                          "accelerate_config=cpu_ddp) to run CPU processes")
    work = Path(spec.out_dir)
    work.mkdir(parents=True, exist_ok=True)
    if launch.accelerate_config == "cpu_ddp":
        # accelerate launches MULTI_CPU through MPI only (its simple launcher starts one process): torchrun starts
        # the CPU processes, the trainer's accelerate state joins them over gloo
        spec = spec.model_copy(update={"overrides": {**spec.overrides, "ddp_backend": "gloo"}})
        argv = torchrun_argv(spec_argv(kind, spec), nproc_per_node=nproc, standalone=True)
    else:
        src = launch.accelerate_config_file()
        cfg = resolved_accelerate_config(src, work / ".launch") if src else None
        argv = accelerate_argv(cfg, spec_argv(kind, spec), num_processes=nproc) if cfg else \
            torchrun_argv(spec_argv(kind, spec), nproc_per_node=nproc, standalone=True)
    log.info("accelerate launch of %s on %d processes: %s", kind, nproc, " ".join(argv))
    _run_streaming(argv, what=f"accelerate launch of `fathom train {kind}`")
    return _summary(work)


def _stage_inputs(spec, base_uri: str) -> tuple[dict[str, str], str, str | None]:
    """Upload local inputs (data, a model folder) beside the checkpoint URI; returns (inputs, model arg, data arg)."""
    from fathom import storage

    inputs: dict[str, str] = {}
    model_arg, data_arg = str(spec.model), None
    data = getattr(spec, "data", None)
    if data:
        inputs["data"] = storage.upload(Path(data), f"{base_uri}/data/{Path(data).name}")
        data_arg = "{input:data}"
    if Path(model_arg).is_dir():
        inputs["model"] = storage.upload(Path(model_arg), f"{base_uri}/model")
        model_arg = "{input:model}"
    return inputs, model_arg, data_arg


def run_trainjob_stage(kind: Kind, spec, launch: LaunchConfig, *, checkpoint_uri: str, step: str,
                       client=None, on_log=print) -> dict[str, Any]:
    """The stage as a TrainJob; returns its summary after downloading the published working folder."""
    from fathom import storage
    from fathom.launch.node import NodePlan
    from fathom.launch.trainjob import WORK_MOUNT, run_trainjob

    if not checkpoint_uri:
        raise ConfigError("launcher=trainjob needs checkpoint_uri (an s3:// folder): the training nodes stage the "
                          "inputs from it and publish the working folder (checkpoints, final model) to it")
    base = checkpoint_uri.rstrip("/")
    inputs, model_arg, data_arg = _stage_inputs(spec, f"{base}.inputs")
    work_dir = f"{WORK_MOUNT}/{step}" if launch.work_pvc else ""
    argv = spec_argv(kind, spec, out="{work}", model=model_arg, data=data_arg, resume=kind != "warmstart")
    plan = NodePlan(fathom_argv=argv, inputs=inputs, output_uri=base, work_dir=work_dir,
                    accelerate_config=launch.accelerate_config)
    command = ["python", "-m", "fathom.launch.node", "--plan", plan.model_dump_json()]
    run_trainjob(launch, command, step=step, client=client, on_log=on_log)
    work = Path(spec.out_dir)
    storage.download(base, work)
    return _summary(work)


def run_stage(kind: Kind, spec, launch: LaunchConfig, *, checkpoint_uri: str = "", step: str = "train",
              client=None) -> dict[str, Any]:
    """Dispatch a stage spec to its launcher (not `inprocess`: the caller runs that itself)."""
    if launch.launcher == "accelerate":
        return run_accelerate(kind, spec, launch)
    if launch.launcher == "trainjob":
        return run_trainjob_stage(kind, spec, launch, checkpoint_uri=checkpoint_uri, step=step, client=client)
    raise ConfigError(f"run_stage does not run launcher {launch.launcher!r}")
