"""The stage-2 filter (method.md §4): run the stage-1 policy on the stage-2 mixture and keep what it does not solve.

The paper says only "adversarially filtered against the stage-1 checkpoint"; here a row is kept when the policy's
pass rate over ``attempts`` rollouts is ≤ ``max_pass_rate`` (default: never solved). Progress is appended to
``OUT/progress.jsonl`` one row at a time, so a crashed filter resumes where it stopped; results are
``OUT/kept.jsonl``, ``OUT/dropped.jsonl`` and ``OUT/filter_stats.json``. A filter that keeps no row raises
:class:`~fathom.errors.EmptyStageError` (stage 2 would have nothing to train on).

The mixture's sources (:func:`build_and_filter`): DuetQA rows; math rows (s1 by path/URI, or on the embedded
default synthetic arithmetic problems); ≥3-hop multi-hop rows — MuSiQue *train* by path/URI (the evaluation file
``data/benchmarks/musique.jsonl`` is refused), or on the embedded default the offline world's 3-hop questions.
Rows whose hop count is unknown are dropped from the multi-hop source (counted in the stats).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from fathom.errors import ConfigError, EmptyStageError

log = logging.getLogger(__name__)


class FilterConfig(BaseModel):
    attempts: int = Field(default=1, ge=1, description="Rollouts of the stage-1 policy per question.")
    max_pass_rate: float = Field(default=0.0, ge=0, le=1, description="Keep a row when its pass rate is ≤ this.")
    batch_questions: int = Field(default=4, ge=1, description="Questions rolled out together (one batch).")
    temperature: float = Field(default=0.6, gt=0, description="Sampling temperature of the filter rollouts.")
    max_tool_steps: int = Field(default=32, ge=0, description="Tool rounds per rollout.")
    max_tokens_per_turn: int = Field(default=8192, ge=1, description="Tokens per turn.")
    max_total_tokens: int = Field(default=40960, ge=16, description="Transcript budget.")
    max_tool_result_chars: int | None = Field(default=None, description="Truncate tool results (smoke runs).")
    judge: str = Field(default="exact", description="Answer judge role.")
    seed: int = Field(default=0, description="Torch seed of the rollouts.")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> FilterConfig:
        base = {"gpu": {},
                "cpu": dict(max_tool_steps=6, max_tokens_per_turn=128, max_total_tokens=4096, max_tool_result_chars=600,
                            batch_questions=8),
                "cpu-smoke": dict(max_tool_steps=1, max_tokens_per_turn=24, max_total_tokens=1024,
                                  max_tool_result_chars=200, batch_questions=4)}[name]
        return cls(**{**base, **overrides})


def keep_row(successes: list[bool], max_pass_rate: float) -> bool:
    """Pure decision: keep when the pass rate is at most ``max_pass_rate``."""
    rate = sum(successes) / len(successes) if successes else 0.0
    return rate <= max_pass_rate + 1e-12


def filter_against_policy(rows: list[dict], model_dir: Path, tools_url: str, out_dir: Path,
                          cfg: FilterConfig = FilterConfig()) -> dict[str, Any]:
    import torch

    from fathom.answer import AnswerJudge  # the evaluation's matching rule and judge
    from fathom.rl.data import write_jsonl
    from fathom.rl.rollout import RolloutConfig, RolloutEngine, http_tools_factory, transformers_generator
    from fathom.rl.stage import load_policy

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not rows:
        raise EmptyStageError("stage-2 filter", {"mixture": 0, "kept": 0}, out_dir=str(out),
                              hint="the stage-2 mixture is empty (no DuetQA, math or multi-hop rows)")
    progress = out / "progress.jsonl"
    done: dict[str, list[bool]] = {}
    if progress.exists():
        for line in progress.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[r["id"]] = r["successes"]
    todo = [r for r in rows if r["id"] not in done]
    if todo:
        model, tok = load_policy(Path(model_dir))
        model.eval()
        torch.manual_seed(cfg.seed)
        rcfg = RolloutConfig(max_tool_steps=cfg.max_tool_steps, max_tokens_per_turn=cfg.max_tokens_per_turn,
                             max_total_tokens=cfg.max_total_tokens, temperature=cfg.temperature,
                             max_tool_result_chars=cfg.max_tool_result_chars)
        engine = RolloutEngine(http_tools_factory(tools_url), rcfg)
        judge = AnswerJudge.from_role(cfg.judge)
        gen = transformers_generator(model, tok, temperature=cfg.temperature, top_p=1.0)
        try:
            from rich.progress import Progress

            with Progress(transient=True) as bar, progress.open("a", encoding="utf-8") as f:
                task = bar.add_task("stage-2 filter", total=len(todo))
                for i in range(0, len(todo), cfg.batch_questions):
                    chunk = todo[i:i + cfg.batch_questions]
                    qs = [r["prompt"] for r in chunk for _ in range(cfg.attempts)]
                    rollouts = engine.generate(qs, tok, gen)
                    golds = [r["answer"] for r in chunk for _ in range(cfg.attempts)]
                    ok = engine._loop.run(judge.judge_many(
                        (q, ro.trajectory.answer, g) for q, ro, g in zip(qs, rollouts, golds)))
                    for j, r in enumerate(chunk):
                        succ = [bool(x) for x in ok[j * cfg.attempts:(j + 1) * cfg.attempts]]
                        done[r["id"]] = succ
                        f.write(json.dumps({"id": r["id"], "successes": succ}) + "\n")
                        f.flush()
                    bar.advance(task, len(chunk))
        finally:
            engine.close()
    kept = [r for r in rows if keep_row(done[r["id"]], cfg.max_pass_rate)]
    dropped = [r for r in rows if not keep_row(done[r["id"]], cfg.max_pass_rate)]
    write_jsonl(kept, out / "kept.jsonl")
    write_jsonl(dropped, out / "dropped.jsonl")
    by_source: dict[str, dict[str, int]] = {}
    for r in rows:
        s = by_source.setdefault(r.get("source", "?"), {"total": 0, "kept": 0})
        s["total"] += 1
        s["kept"] += int(keep_row(done[r["id"]], cfg.max_pass_rate))
    stats = {"total": len(rows), "kept": len(kept), "dropped": len(dropped), "by_source": by_source,
             "attempts": cfg.attempts, "max_pass_rate": cfg.max_pass_rate}
    (out / "filter_stats.json").write_text(json.dumps(stats, indent=2))
    if not kept:
        raise EmptyStageError("stage-2 filter", {"mixture": len(rows), "kept": 0},
                              {f"solved:{k}": v["total"] - v["kept"] for k, v in by_source.items()}, out_dir=str(out),
                              hint=f"the stage-1 policy solves every row at pass rate > {cfg.max_pass_rate}")
    return stats


def _is_evaluation_file(path: Path) -> str | None:
    """Why `path` is an evaluation set (inside the benchmarks folder, or mostly its questions), else None."""
    from fathom.selfplay.decontam import read_eval_questions
    from fathom.selfplay.dedup import default_benchmarks_dir
    from fathom.selfplay.text import normalize_text

    bench = default_benchmarks_dir()
    if bench is None or not Path(bench).is_dir():
        return None
    rp = path.resolve()
    if rp.parent == Path(bench).resolve():
        return f"it is in the evaluation folder {bench}"
    from fathom.rl.data import read_records

    qs = [normalize_text(str(r.get("question") or r.get("prompt") or "")) for r in read_records(path)[:200]]
    evals = {normalize_text(q) for _, q in read_eval_questions(bench)}
    hits = sum(q in evals for q in qs if q)
    if qs and hits >= max(1, len(qs) // 2):
        return f"{hits} of its first {len(qs)} questions are evaluation questions"
    return None


def multihop_rows(musique: str | Path | None, *, limit: int | None, n_offline: int) -> list[dict]:
    """The ≥3-hop source: MuSiQue train rows from a path or URI (never the evaluation file), or on the embedded
    default the offline world's 3-hop questions (``source=offline-web-3hop``, ``hops=3``)."""
    from fathom.rl.data import load_rl_rows, normalize_rows, offline_rows

    if musique is None:
        rows = offline_rows(limit or n_offline, hops=3, seed=1)
        return normalize_rows(({**r, "source": "offline-web-3hop"} for r in rows), where="offline 3-hop rows")
    from fathom import storage

    path = storage.localize(str(musique)) if storage.is_s3(str(musique)) else Path(musique)
    why = _is_evaluation_file(Path(path))
    if why:
        raise ConfigError(f"refusing {musique} as stage-2 training data: {why}. Pass MuSiQue *train* "
                          "(e.g. musique_ans_v1.0_train.jsonl by path or s3:// URI) or omit it to use the offline "
                          "world's 3-hop questions")
    return load_rl_rows(Path(path), source="musique", limit=limit)


def build_and_filter(out_dir: Path, *, model: str, tools_url: str | None, preset: str = "cpu-smoke",
                     duetqa: Path | None = None, math: str | Path | None = None, musique: str | Path | None = None,
                     n_offline: int = 4, limit_per_source: int | None = None, **cfg_overrides: Any) -> dict[str, Any]:
    """The stage-2 data step: build the mixture (DuetQA + math + ≥3-hop multi-hop; see the module doc for the
    embedded defaults of each) and filter it against the stage-1 policy."""
    from fathom.rl.data import hop_count, load_rl_rows, offline_rows, stage2_mixture, synthetic_math_rows
    from fathom.rl.stage import resolve_model_dir, tool_backend

    duet = load_rl_rows(duetqa, source="duetqa", limit=limit_per_source) if duetqa else offline_rows(n_offline, hops=3)
    if math is not None:
        from fathom import storage

        mpath = storage.localize(str(math)) if storage.is_s3(str(math)) else Path(math)
        maths = load_rl_rows(Path(mpath), source="math", limit=limit_per_source)
    else:
        maths = synthetic_math_rows(limit_per_source or n_offline)
    mus = multihop_rows(musique, limit=limit_per_source, n_offline=n_offline)
    rows = stage2_mixture(duet, maths, mus)
    hops = [hop_count(r) for r in mus]
    mixture = {"duetqa": len(duet), "math": len(maths), "multihop_in": len(mus),
               "multihop_unknown_hops": sum(h is None for h in hops),
               "multihop_under_3_hops": sum(h is not None and h < 3 for h in hops), "pool": len(rows)}
    log.info("stage-2 mixture: %s", mixture)
    cfg = FilterConfig.preset(preset, **cfg_overrides)
    with tool_backend(tools_url) as url:
        stats = filter_against_policy(rows, resolve_model_dir(model), url, out_dir, cfg)
    stats["mixture"] = mixture
    (Path(out_dir) / "filter_stats.json").write_text(json.dumps(stats, indent=2))
    return stats
