"""The theme bank and the seed bank (both user-replaceable files), and per-item planning (pure functions)."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from pydantic import BaseModel, Field

from fathom.errors import ConfigError


class Seed(BaseModel):
    id: str
    question: str
    answer: str | None = None
    scaffold: str | None = Field(default=None, description="The multi-hop structure with slots, if written down.")
    family: str | None = None


class ItemPlan(BaseModel):
    """Everything random about one item, derived from (seed, index) only, so a restarted run plans the same item."""

    id: str
    index: int
    mode: str  # mixture | seeded
    themes: list[str]
    seed: Seed | None = None
    generator: str  # m1 | m2
    rng_seed: int


def load_themes(path: Path) -> list[str]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"theme bank {path} does not exist")
    themes: list[str] = []
    seen: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        t = line.split("#", 1)[0].strip()
        if t and t.lower() not in seen:
            seen.add(t.lower())
            themes.append(t)
    if not themes:
        raise ConfigError(f"theme bank {path} holds no themes")
    return themes


def bank_version(path: Path) -> str:
    """Short content hash of a bank file (recorded in the dataset card)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def load_seeds(path: Path) -> list[Seed]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"seed bank {path} does not exist")
    seeds = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            seeds.append(Seed.model_validate(json.loads(line)))
        except Exception as exc:  # noqa: BLE001 - reported with the line number
            raise ConfigError(f"{path}:{n}: not a seed record {{id, question, ...}}: {exc}") from exc
    if not seeds:
        raise ConfigError(f"seed bank {path} holds no seeds")
    return seeds


def sample_themes(themes: list[str], rng: random.Random, k_choices: list[int]) -> list[str]:
    """k ~ Uniform(k_choices), then k distinct themes ~ Uniform(T) (method.md §1.3 step 1)."""
    k = rng.choice(k_choices)
    if k > len(themes):
        raise ConfigError(f"cannot sample {k} themes from a bank of {len(themes)}")
    return rng.sample(themes, k)


def item_rng_seed(seed: int, index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"duetqa:{seed}:{index}".encode()).digest()[:8], "big")


def plan_item(index: int, *, seed: int, themes: list[str], seeds: list[Seed], mode: str, seeded_fraction: float,
              k_choices: list[int], prefix: str = "dq") -> ItemPlan:
    rng = random.Random(item_rng_seed(seed, index))
    item_mode = mode if mode != "both" else ("seeded" if rng.random() < seeded_fraction else "mixture")
    sampled = sample_themes(themes, rng, k_choices)
    seed_q = rng.choice(seeds) if item_mode == "seeded" else None
    return ItemPlan(id=f"{prefix}-{seed}-{index:06d}", index=index, mode=item_mode, themes=sampled, seed=seed_q,
                    generator="m1" if index % 2 == 0 else "m2", rng_seed=rng.randrange(2**31))
