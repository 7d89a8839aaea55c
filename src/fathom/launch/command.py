"""Command lines of a distributed training run: the project's own entry point (`fathom train search|warmstart|
synthesizer ...`) and the launcher that starts one copy per process (`accelerate launch` with a DeepSpeed/FSDP config,
or `torchrun`). Pure functions: they build argv lists and resolve config files, nothing runs here."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

from fathom.errors import ConfigError

Kind = Literal["search", "warmstart", "synthesizer"]


def _set_args(overrides: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in sorted(overrides.items()):
        out += ["--set", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    return out


def train_argv(kind: Kind, *, out: str, preset: str, model: str, data: str | None = None, stage: int = 1,
               tools_url: str | None = None, judge: str = "exact", labeller: str = "heuristic", resume: bool = False,
               overrides: dict[str, Any] | None = None) -> list[str]:
    """`fathom` CLI arguments of one training stage (what `python -m fathom.cli ...` receives)."""
    argv = ["train", kind, "--out", out, "--preset", preset, "--model", model]
    if kind == "search":
        argv += ["--stage", str(stage), "--judge", judge or "exact", "--labeller", labeller or "heuristic"]
    if data and kind in ("search", "synthesizer"):
        argv += ["--data", data]
    if tools_url and kind in ("search", "warmstart"):
        argv += ["--tools", tools_url]
    if resume and kind in ("search", "synthesizer"):
        argv.append("--resume")
    return argv + _set_args(overrides or {})


def resolved_accelerate_config(src: Path, dest_dir: Path) -> Path:
    """A copy of an accelerate config whose `deepspeed_config_file` is an absolute path (the configs beside the
    trainer name it relative to the repository; in an image or another working folder that does not resolve)."""
    import yaml

    cfg = yaml.safe_load(src.read_text()) or {}
    ds = (cfg.get("deepspeed_config") or {}).get("deepspeed_config_file")
    if ds and not Path(ds).is_absolute():
        for cand in (Path(ds), src.parent / Path(ds).name):
            if cand.is_file():
                cfg["deepspeed_config"]["deepspeed_config_file"] = str(cand.resolve())
                break
        else:
            raise ConfigError(f"{src}: deepspeed_config_file {ds} not found")
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    dest.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


def accelerate_argv(config_file: Path | None, fathom_argv: list[str], *, num_processes: int, num_machines: int = 1,
                    machine_rank: int = 0, main_process_ip: str | None = None,
                    main_process_port: int | None = None) -> list[str]:
    """`accelerate launch [...] -m fathom.cli <fathom_argv>`: `num_processes` is the total over all machines."""
    argv = [sys.executable, "-m", "accelerate.commands.launch"]
    if config_file is not None:
        argv += ["--config_file", str(config_file)]
    argv += ["--num_processes", str(num_processes), "--num_machines", str(num_machines),
             "--machine_rank", str(machine_rank)]
    if num_machines > 1:
        if not main_process_ip:
            raise ConfigError("multi-node accelerate launch needs the main process address")
        argv += ["--main_process_ip", main_process_ip, "--main_process_port", str(main_process_port or 29500),
                 # every pod runs its own launcher (no pdsh/ssh between pods): DeepSpeed's torchrun-style launcher
                 "--deepspeed_multinode_launcher", "standard"]
    return argv + ["-m", "fathom.cli", *fathom_argv]


def torchrun_argv(fathom_argv: list[str], *, nproc_per_node: int | str | None = None,
                  standalone: bool = False) -> list[str]:
    """`torchrun -m fathom.cli ...`: node count, rank and rendezvous come from the PET_* env Kubeflow Trainer's torch
    runtime injects (torchrun reads PET_<FLAG> as the default of --<flag>), or `--standalone` on one machine."""
    argv = [sys.executable, "-m", "torch.distributed.run"] + (["--standalone"] if standalone else [])
    if nproc_per_node is not None:
        argv += ["--nproc_per_node", str(nproc_per_node)]
    return argv + ["-m", "fathom.cli", *fathom_argv]


def node_topology(env: dict[str, str] | None = None, *, local_devices: int | None = None) -> dict[str, Any]:
    """This node's place in a Trainer torch job, from the PET_* env (defaults: one node, all local devices)."""
    env = dict(os.environ if env is None else env)
    nproc = env.get("PET_NPROC_PER_NODE", "auto")
    if not str(nproc).isdigit():
        if local_devices is None:
            import torch

            local_devices = torch.cuda.device_count()
        nproc = local_devices or 1
    return {"nnodes": int(env.get("PET_NNODES", "1")), "nproc_per_node": int(nproc),
            "node_rank": int(env.get("PET_NODE_RANK", env.get("JOB_COMPLETION_INDEX", "0"))),
            "master_addr": env.get("PET_MASTER_ADDR"), "master_port": int(env.get("PET_MASTER_PORT", "29500"))}
