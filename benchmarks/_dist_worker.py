"""torchrun entry point of bench_distributed.py: `fathom.rl.dist_check` with the sensitivity control applied (the
trainer step of every rank does FATHOM_BENCH_SLOWDOWN times its CPU work)."""

import os

import _harness as H

from fathom.rl import dist_check
from fathom.rl.trainer import RAPOTrainer

H.patch_slowdown(RAPOTrainer, "training_step", float(os.environ.get(H.SLOWDOWN_ENV, "1")))

if __name__ == "__main__":
    dist_check.main()
