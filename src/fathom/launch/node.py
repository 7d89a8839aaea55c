"""What each node of a TrainJob runs: stage the inputs in, start one training process per device under the launcher,
and (node 0) publish the working folder.

    python -m fathom.launch.node --plan '<NodePlan JSON>'

The plan names the project's training entry point as `fathom` CLI arguments (`train search --out {work} --data
{input:data} ...`); `{work}` and `{input:NAME}` are replaced by this node's local paths. The node's process is the
container's main process, so its exit code is the pod's: a failed rank fails the pod, the TrainJob, and the KFP task
that waits on it.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, Field

from fathom.launch.command import accelerate_argv, node_topology, resolved_accelerate_config, torchrun_argv

log = logging.getLogger("fathom.launch.node")


class NodePlan(BaseModel):
    """One training run as every node executes it."""

    model_config = {"extra": "forbid"}

    fathom_argv: list[str] = Field(description="`fathom` CLI arguments; `{work}` and `{input:NAME}` are replaced.")
    inputs: dict[str, str] = Field(default_factory=dict, description="NAME → URI (s3:// or path) staged in first.")
    output_uri: str = Field(default="", description="Where node 0 publishes the working folder ('' = nowhere); "
                            "a previous attempt's folder there is staged in first (resume).")
    work_dir: str = Field(default="", description="The working folder: a shared PVC mount, or '' = `work/` "
                          "in the node's root ($FATHOM_NODE_ROOT, /tmp/fathom-train) on its local disk.")
    accelerate_config: str = Field(default="", description="accelerate config file name or path ('' or cpu_ddp = "
                                   "torchrun).")


def _substitute(argv: list[str], work: Path, inputs: dict[str, Path]) -> list[str]:
    out = []
    for a in argv:
        a = a.replace("{work}", str(work))
        for name, path in inputs.items():
            a = a.replace(f"{{input:{name}}}", str(path))
        out.append(a)
    return out


def stage_in(plan: NodePlan, root: Path) -> tuple[Path, dict[str, Path]]:
    """Download the inputs and the previous attempt's working folder; returns (work dir, input paths)."""
    from fathom import storage

    work = Path(plan.work_dir) if plan.work_dir else root / "work"
    local: dict[str, Path] = {}
    for name, uri in plan.inputs.items():
        dest = root / "inputs" / name
        if not dest.exists():
            storage.download(uri, dest)
        local[name] = dest
    if plan.output_uri and not work.exists() and storage.exists(plan.output_uri):
        log.info("resuming: staging %s into %s", plan.output_uri, work)
        storage.download(plan.output_uri, work)
    work.mkdir(parents=True, exist_ok=True)
    return work, local


def launcher_argv(plan: NodePlan, fathom_argv: list[str], root: Path, env: dict[str, str] | None = None) -> list[str]:
    """The launcher command of this node: accelerate (with a DeepSpeed/FSDP config) or torchrun."""
    if plan.accelerate_config in ("", "cpu_ddp"):  # accelerate starts MULTI_CPU through MPI only
        return torchrun_argv(fathom_argv)
    topo = node_topology(env)
    from fathom.launch.config import LaunchConfig

    src = LaunchConfig(accelerate_config=plan.accelerate_config).accelerate_config_file()
    cfg = resolved_accelerate_config(src, root / "accelerate") if src else None
    return accelerate_argv(cfg, fathom_argv, num_processes=topo["nnodes"] * topo["nproc_per_node"],
                           num_machines=topo["nnodes"], machine_rank=topo["node_rank"],
                           main_process_ip=topo["master_addr"], main_process_port=topo["master_port"])


def run_node(plan: NodePlan, *, root: Path | None = None, env: dict[str, str] | None = None) -> int:
    """Stage in, run the launcher (its output goes to this process's stdout: the pod log), publish (node 0)."""
    root = Path(root or os.environ.get("FATHOM_NODE_ROOT", "/tmp/fathom-train"))
    work, inputs = stage_in(plan, root)
    argv = launcher_argv(plan, _substitute(plan.fathom_argv, work, inputs), root, env)
    log.info("launching: %s", " ".join(argv))
    rc = subprocess.call(argv, env={**os.environ, **(env or {})})
    if rc != 0:
        print(f"fathom.launch.node: training exited with code {rc}", file=sys.stderr, flush=True)
        return rc
    if plan.output_uri and node_topology(env, local_devices=1)["node_rank"] == 0:
        from fathom import storage

        storage.upload(work, plan.output_uri)
        print(f"fathom.launch.node: published {work} to {plan.output_uri}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m fathom.launch.node")
    p.add_argument("--plan", required=True, help="NodePlan as JSON")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(run_node(NodePlan.model_validate_json(a.plan)))


if __name__ == "__main__":
    main()
