"""RAPO = GRPO + dataset pruning (Eq. 5) + reward-aware advantage scaling (Eq. 6) + a per-prompt replay buffer
(method.md §2). Pure functions and small state objects; the trainer only orchestrates them.

Rewards arrive as a flat list ordered group by group: ``rewards[g*G:(g+1)*G]`` are the G rollouts of prompt g.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

StdKind = Literal["population", "unbiased", "none"]


# ---------------------------------------------------------------------------------------------------------------
# Eq. 3 and Eq. 6


def _groups(values: Sequence[float], group_size: int) -> list[list[float]]:
    if group_size < 1:
        raise ValueError(f"group size must be ≥ 1, got {group_size}")
    if len(values) % group_size:
        raise ValueError(f"{len(values)} rewards do not split into groups of {group_size}")
    return [list(values[i: i + group_size]) for i in range(0, len(values), group_size)]


def _std(xs: list[float], kind: StdKind) -> float:
    n = len(xs)
    mu = sum(xs) / n
    ss = sum((x - mu) ** 2 for x in xs)
    if kind == "unbiased":
        return math.sqrt(ss / (n - 1)) if n > 1 else 0.0
    return math.sqrt(ss / n)


def group_spread(rewards: Sequence[float], group_size: int, tol: float = 1e-9) -> list[bool]:
    """Per group: True when its rewards are not all equal (σ_R > 0, a "Good" group)."""
    return [max(g) - min(g) > tol for g in _groups(rewards, group_size)]


def group_advantages(rewards: Sequence[float], group_size: int, *, std: StdKind = "population",
                     eps: float = 1e-6, tol: float = 1e-9) -> list[float]:
    """Eq. 3: ``Â_i = (r_i − μ_R) / (σ_R + eps)`` within each group. ``std="population"`` is Eq. 3 as written
    (1/G); ``"unbiased"`` matches ReCall/verl (torch.std); ``"none"`` only centres (Dr. GRPO). Groups without
    spread get exactly 0 (no floating-point residue)."""
    out: list[float] = []
    for g in _groups(rewards, group_size):
        if max(g) - min(g) <= tol:
            out.extend(0.0 for _ in g)
            continue
        mu = sum(g) / len(g)
        sd = 1.0 if std == "none" else _std(g, std) + eps
        out.extend((x - mu) / sd for x in g)
    return out


def advantage_scale_factor(n_groups: int, n_good: int, cap: float | None = 8.0) -> float:
    """Eq. 6 factor: ``#groups / #groups with spread`` (the inverse fraction of informative groups), at most
    ``cap``. 1.0 when no group has spread (every advantage is zero anyway) or the batch is empty."""
    if n_groups <= 0 or n_good <= 0:
        return 1.0
    factor = n_groups / n_good
    return min(factor, cap) if cap is not None else factor


def scale_advantages(advantages: Sequence[float], rewards: Sequence[float], group_size: int,
                     cap: float | None = 8.0) -> tuple[list[float], float]:
    """Apply Eq. 6 to a batch; returns the scaled advantages and the factor used."""
    spread = group_spread(rewards, group_size)
    factor = advantage_scale_factor(len(spread), sum(spread), cap)
    return [a * factor for a in advantages], factor


# ---------------------------------------------------------------------------------------------------------------
# Eq. 5: pruning


def solve_rate(successes: Sequence[bool]) -> float:
    """Fraction of successful rollouts (success = answer correct); 0.0 for no rollouts."""
    return sum(bool(s) for s in successes) / len(successes) if successes else 0.0


def prompts_to_prune(stats: dict[Hashable, Sequence[bool]], threshold: float = 0.9) -> set:
    """Eq. 5: the prompts whose solve rate over this epoch's rollouts is ≥ ``threshold``."""
    return {pid for pid, succ in stats.items() if succ and solve_rate(succ) >= threshold - 1e-12}


# ---------------------------------------------------------------------------------------------------------------
# Replay buffer


@dataclass
class ReplayBuffer:
    """Per-prompt buffer of the latest successful trajectory (reward > threshold). Entries are plain dicts
    (token ids, env mask, text, reward parts...), so the buffer serialises to JSON with the checkpoint."""

    threshold: float = 0.5
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    insertions: int = 0  # replays performed (cumulative)
    updates: int = 0  # buffer writes (cumulative)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, pid: str) -> bool:
        return pid in self.entries

    def get(self, pid: str) -> dict[str, Any] | None:
        return self.entries.get(pid)

    def offer(self, pid: str, reward: float, entry: dict[str, Any]) -> bool:
        """Store ``entry`` as the latest success of ``pid`` when ``reward > threshold``."""
        if reward > self.threshold:
            self.entries[pid] = entry
            self.updates += 1
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "entries": dict(self.entries), "insertions": self.insertions,
                "updates": self.updates}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ReplayBuffer:
        return cls(threshold=state["threshold"], entries=dict(state["entries"]), insertions=state["insertions"],
                   updates=state["updates"])


def plan_replay(rewards: Sequence[float], successes: Sequence[bool], group_size: int, pids: Sequence[str],
                buffer: ReplayBuffer, rng: random.Random) -> dict[int, str]:
    """Decide replays for one batch (pure apart from drawing from ``rng``).

    Walks the groups in order: every rollout with reward > threshold becomes the buffer entry of its prompt
    (the caller stores it: this function only decides); a group whose rollouts *all fail* (no correct answer —
    the paper's trigger, also right for Eq. 8 where wrong rollouts get partial credit) and whose prompt has a
    buffered success gets one uniformly chosen rollout replaced. Returns ``{flat rollout index: pid}``."""
    if not (len(rewards) == len(successes) == len(pids)):
        raise ValueError("rewards, successes and pids must have the same length")
    plan: dict[int, str] = {}
    for g, start in enumerate(range(0, len(rewards), group_size)):
        idx = range(start, start + group_size)
        pid = pids[start]
        if any(pids[i] != pid for i in idx):
            raise ValueError(f"group {g} mixes prompts: rollouts of one prompt must be contiguous")
        if not any(successes[i] for i in idx) and pid in buffer:
            plan[start + rng.randrange(group_size)] = pid
    return plan


# ---------------------------------------------------------------------------------------------------------------
# Data schedule with epoch-end pruning


@dataclass
class Curriculum:
    """The prompt schedule of RAPO: epochs over the *active* prompts in a seeded random order, generation batches
    of ``prompts_per_batch`` prompts, and Eq. 5 pruning applied when an epoch ends.

    The schedule is decided when a batch is generated (not by the data loader, which prefetches), so the pruning
    of epoch e is known before epoch e+1 starts. The last batch of an epoch is completed with prompts from the
    start of the same epoch's order. Deterministic from its state, which is saved with every checkpoint."""

    pids: list[str]
    prompts_per_batch: int
    seed: int = 0
    prune: bool = True
    threshold: float = 0.9
    epoch: int = 0
    cursor: int = 0
    order: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    stats: dict[str, list[bool]] = field(default_factory=dict)
    exhausted: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per finished epoch

    def __post_init__(self) -> None:
        if self.prompts_per_batch < 1:
            raise ValueError("prompts_per_batch must be ≥ 1")
        if len(set(self.pids)) != len(self.pids):
            raise ValueError("prompt ids must be unique")
        if not self.pids:
            raise ValueError("the curriculum needs at least one prompt")
        if not self.order:
            self.order = self._permutation()

    @property
    def active(self) -> list[str]:
        pruned = set(self.pruned)
        return [p for p in self.pids if p not in pruned]

    def _permutation(self) -> list[str]:
        active = self.active or list(self.pids)
        rng = random.Random(f"{self.seed}:{self.epoch}")
        order = list(active)
        rng.shuffle(order)
        return order

    def _end_epoch(self) -> None:
        newly: set = set()
        if self.prune:
            newly = prompts_to_prune(self.stats, self.threshold) - set(self.pruned)
        remaining = len(self.active) - len(newly)
        self.history.append({"epoch": self.epoch, "seen": len(self.stats), "pruned_now": len(newly),
                             "pruned_total": len(self.pruned) + len(newly), "active": max(remaining, 0)})
        if remaining <= 0:
            self.exhausted = True  # every prompt solved: the trainer stops; keep the set to finish this batch
        else:
            self.pruned.extend(sorted(newly))
        self.stats = {}
        self.epoch += 1
        self.cursor = 0
        self.order = self._permutation()

    def finish(self) -> None:
        """Training ended: close the epoch when its order was used up, so Eq. 5 is applied to it and its row is in
        ``history`` (otherwise an epoch is closed lazily by the next batch, and a run's last epoch never would be)."""
        if self.cursor >= len(self.order) and not self.exhausted:
            self._end_epoch()

    def next_batch(self) -> list[str]:
        """The prompt ids of the next generation batch (ends the finished epoch first)."""
        if self.cursor >= len(self.order):
            self._end_epoch()
        take = self.order[self.cursor: self.cursor + self.prompts_per_batch]
        self.cursor += len(take)
        if len(take) < self.prompts_per_batch:  # epoch tail: complete from this epoch's order
            fill = [self.order[i % len(self.order)] for i in range(self.prompts_per_batch - len(take))]
            take = take + fill
            self.cursor = len(self.order)
        return take

    def record(self, pid: str, successes: Sequence[bool]) -> None:
        """Record this epoch's rollout outcomes of a prompt (success = answer correct)."""
        self.stats.setdefault(pid, []).extend(bool(s) for s in successes)

    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy({k: getattr(self, k) for k in (
            "pids", "prompts_per_batch", "seed", "prune", "threshold", "epoch", "cursor", "order", "pruned", "stats",
            "exhausted", "history")})

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Curriculum:
        return cls(**copy.deepcopy(state))
