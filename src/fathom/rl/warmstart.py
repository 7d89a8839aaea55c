"""Policy warm start: cold-start SFT of the search policy on expert trajectories, before RAPO stage 1.

The paper trains RL-Zero (no warm start: ``paper`` preset, off). A 135M model cannot find a single rewarded
trajectory on its own, so RAPO would see zero reward spread and change no weight; the embedded preset therefore
first imitates the offline web's expert (:class:`fathom.web.offline.expert.ExpertPolicy`), whose trajectories are
real runs of the one turn engine (:func:`fathom.agent.run_agent`) against the real tool server.

Loss mask: exactly the RAPO rollout mask — policy tokens (model turns and the ``<|im_end|>`` that closes them)
count, everything the environment wrote (system prompt, question, ``<tool_response>`` turns, generation prefixes)
does not. Each segment is tokenised on its own, as :class:`fathom.rl.rollout.RolloutEngine` does.

Output folder::

    OUT/data/expert.jsonl   the expert trajectories (Trajectory JSON), kept between attempts
    OUT/checkpoint-N/       HF Trainer checkpoints (resume continues from the newest)
    OUT/final/              the warm-started policy (safetensors + tokenizer), `.complete` when finished
    OUT/metrics.jsonl, OUT/plots/, OUT/summary.json
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from fathom.agent.format import IM_START
from fathom.errors import ConfigError
from fathom.storage import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

PRESETS_DIR = Path(__file__).parent / "presets"
#: Bump when the expert's turns or the training recipe change (it is part of the cache fingerprint).
WARMSTART_VERSION = "ws-1"


class WarmStartConfig(BaseModel):
    """What the warm start imitates and how it trains (field descriptions are the documentation)."""

    enabled: bool = Field(default=True, description="False: the stage copies the base policy through unchanged "
                          "(the paper's RL-Zero).")
    n_questions: int = Field(default=160, ge=1, description="Expert trajectories to imitate (offline-web questions "
                             "of the training world).")
    hops: dict[int, float] = Field(default={1: 0.5, 2: 0.4, 3: 0.1},
                                   description="Mix of question hop counts (weights).")
    question_seed: int = Field(default=11, description="Seed of the question draw.")
    max_result_chars: int = Field(default=600, ge=100, description="Tool results are cut to this many characters "
                                  "(must match the policy's agent/rollout setting).")
    epochs: float = Field(default=2.0, gt=0, description="Passes over the expert trajectories.")
    learning_rate: float = Field(default=2e-4, gt=0, description="Peak learning rate (cosine, 5% warm-up).")
    batch_size: int = Field(default=4, ge=1, description="Trajectories per device step (they share one forward "
                            "pass of the system prefix).")
    grad_accum: int = Field(default=1, ge=1, description="Gradient accumulation steps.")
    freeze_layers: int = Field(default=12, ge=0, description="Freeze the token embeddings and this many bottom "
                               "decoder layers (CPU time: backward stops above them; 0 = train everything).")
    max_length: int = Field(default=4096, ge=256, description="Longer trajectories are dropped (counted).")
    seed: int = Field(default=0, description="Training seed.")

    @classmethod
    def from_file(cls, path: str | Path) -> WarmStartConfig:
        import yaml

        return cls.model_validate(yaml.safe_load(Path(path).read_text()) or {})


def load_preset(name: str) -> WarmStartConfig:
    """A preset file beside the trainer (`presets/warmstart-<name>.yaml`) or a path to a YAML file."""
    path = Path(name)
    if not path.is_file():
        path = PRESETS_DIR / f"warmstart-{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem.removeprefix("warmstart-") for p in PRESETS_DIR.glob("warmstart-*.yaml"))
        raise ConfigError(f"unknown warm-start preset {name!r}; choose one of {known} or pass a YAML file")
    return WarmStartConfig.from_file(path)


class WarmStartSpec(BaseModel):
    """One warm-start run."""

    out_dir: Path = Field(description="Output folder.")
    model: str = Field(default="local:smollm2", description="Base policy: local:<name> or a HF folder.")
    config: WarmStartConfig = Field(default_factory=WarmStartConfig)
    tools_url: str | None = Field(default=None, description="Tool server; None = start the offline stack.")
    world_seed: int = Field(default=0, description="Offline world of the training questions.")
    world_pages: int = Field(default=120, ge=10, description="Its size.")
    resume: bool = Field(default=True, description="Continue from the newest checkpoint in out_dir (or mirrored "
                         "at checkpoint_uri).")
    checkpoint_uri: str | None = Field(default=None, description="Mirror every checkpoint here as it is saved "
                                       "(s3:// or a folder) and resume from the newest complete one "
                                       "(fathom.checkpoints).")
    cache: bool = Field(default=True, description="Reuse a finished warm start with the same inputs (base weights, "
                        "config, world) from $FATHOM_HOME/warmstart/<fingerprint>, and store this one there.")


def fingerprint(spec: WarmStartSpec, model_dir: Path) -> str:
    """Identity of a warm start: what it trains from (base config + weight sizes and digests of the first MB),
    on what (world seed/pages, the prompt template's bytes) and how (the config). Equal fingerprints give equal
    results."""
    import hashlib

    h = hashlib.sha256()
    h.update(spec.config.model_dump_json().encode())
    from fathom.agent.format import TEMPLATE_VERSION, template_sha

    h.update(f"{spec.world_seed}|{spec.world_pages}|{WARMSTART_VERSION}|{TEMPLATE_VERSION}|"
             f"{template_sha('fathom')}".encode())
    weights_digest(h, model_dir)
    return h.hexdigest()[:16]


def weights_digest(h, model_dir: Path) -> None:
    """Feed a model folder's identity into hasher `h`: config and weight files' sizes and first-MB digests."""
    import hashlib

    for f in sorted(model_dir.glob("*.safetensors")) + [model_dir / "config.json"]:
        with open(f, "rb") as fh:
            h.update(f"{f.name}|{f.stat().st_size}|".encode() + hashlib.sha256(fh.read(1 << 20)).digest())


def cache_dir(fp: str) -> Path:
    from fathom.config import fathom_home

    return fathom_home() / "warmstart" / fp


# ---------------------------------------------------------------------------------------------------------------
# Data: expert trajectories -> (input_ids, labels) with the rollout mask


def draw_questions(web, cfg: WarmStartConfig) -> list:
    """`cfg.n_questions` world questions with the configured hop mix (deterministic)."""
    weights = {int(h): float(w) for h, w in cfg.hops.items() if w > 0}
    total = sum(weights.values())
    counts = {h: int(round(cfg.n_questions * w / total)) for h, w in weights.items()}
    counts[max(weights, key=weights.get)] += cfg.n_questions - sum(counts.values())
    out = []
    for h, n in sorted(counts.items()):
        if n > 0:
            out += web.questions(n, hops=h, seed=cfg.question_seed)
    random.Random(cfg.question_seed).shuffle(out)
    return out


async def expert_trajectories(questions: list, tools_url: str, count_tokens, *, max_result_chars: int,
                              concurrency: int = 8) -> list:
    """Run the expert on every question through the tool server; keep only correct, answered runs."""
    from fathom.agent import HttpTools, run_agent
    from fathom.web.client import ToolClient
    from fathom.web.offline.expert import ExpertPolicy, expert_agent_config

    expert = ExpertPolicy(count_tokens)
    for q in questions:
        expert.register(q.question, q.hops)
    tools = HttpTools(ToolClient(tools_url))
    cfg = expert_agent_config(max_result_chars=max_result_chars)
    sem = asyncio.Semaphore(concurrency)

    async def one(q):
        async with sem:
            return await run_agent(q.question, expert, tools, cfg)

    try:
        trajs = await asyncio.gather(*(one(q) for q in questions))
    finally:
        await tools.aclose()
    return [t for q, t in zip(questions, trajs) if t.status == "answered" and t.answer == q.answer]


def trajectory_features(traj, tokenizer) -> tuple[list[int], list[int], int]:
    """Token ids of the transcript, labels (-100 on environment tokens; each segment tokenised on its own, as in
    rollouts) and the length of the system prefix (identical for every trajectory of one template and preset)."""
    head, sep, rest = traj.prompt.partition(f"{IM_START}user\n")
    system = list(tokenizer(head, add_special_tokens=False).input_ids)
    ids = system + list(tokenizer(sep + rest, add_special_tokens=False).input_ids)
    labels = [-100] * len(ids)
    for seg in traj.segments:
        seg_ids = tokenizer(seg.text, add_special_tokens=False).input_ids
        ids += seg_ids
        labels += list(seg_ids) if seg.role == "model" else [-100] * len(seg_ids)
    return ids, labels, len(system)


# ---------------------------------------------------------------------------------------------------------------
# Training


def freeze_bottom(model, n_layers: int) -> int:
    """Freeze the embeddings and the bottom `n_layers` decoder layers; returns trainable parameters."""
    if n_layers <= 0:
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.get_input_embeddings().weight.requires_grad_(False)
    layers = model.model.layers
    for layer in layers[: min(n_layers, len(layers))]:
        for p in layer.parameters():
            p.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def length_batches(rows: list[dict], size: int, *, seed: int = 0) -> list[list[dict]]:
    """Batches of `size` rows of similar length (sorted, then chunked; the batch order shuffled by `seed`), so
    that little compute goes into padding."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    batches = [[rows[i] for i in order[k:k + size]] for k in range(0, len(order), size)]
    random.Random(seed).shuffle(batches)
    return batches


class _Collator:
    """Batches trajectories that share their system prefix: the prefix once, the suffixes right-padded. Takes
    rows, or one pre-built batch (a list of rows) as the Trainer hands it over with a batch size of 1."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list) -> dict:
        import torch

        if len(rows) == 1 and isinstance(rows[0], list):
            rows = rows[0]
        k = min(r["prefix_len"] for r in rows)
        prefix = rows[0]["input_ids"][:k]
        if any(r["input_ids"][:k] != prefix for r in rows):
            raise ValueError("trajectories of one batch must share their system prefix (one template and preset)")
        n = max(len(r["input_ids"]) - k for r in rows)
        ids = torch.full((len(rows), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), n), -100, dtype=torch.long)
        att = torch.zeros((len(rows), k + n), dtype=torch.long)
        att[:, :k] = 1
        for i, r in enumerate(rows):
            m = len(r["input_ids"]) - k
            ids[i, :m] = torch.tensor(r["input_ids"][k:])
            labels[i, :m] = torch.tensor(r["labels"][k:])
            att[i, k:k + m] = 1
        return {"prefix_ids": torch.tensor(prefix, dtype=torch.long), "input_ids": ids, "labels": labels,
                "attention_mask": att}


def shared_prefix_loss(model, prefix_ids, input_ids, attention_mask, labels, num_items=None):
    """Token-level cross-entropy of a batch whose rows share ``prefix_ids``: the prefix is run once and its
    key/value cache repeated for every row — the same loss and gradients as running each full row (checked by
    a test), for (B−1)·|prefix| fewer tokens. ``labels`` align with ``input_ids`` (the suffixes)."""
    import torch
    import torch.nn.functional as F

    B, L = input_ids.shape
    P = prefix_ids.shape[0]
    pre = model(input_ids=prefix_ids[None], use_cache=True)
    cache = pre.past_key_values
    cache.batch_repeat_interleave(B)
    pos = (P + torch.arange(L, device=input_ids.device))[None].expand(B, L)
    out = model(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, position_ids=pos,
                use_cache=False)
    # the last prefix position predicts suffix token 0; suffix position j predicts suffix token j + 1
    logits = out.logits
    first = pre.logits[0, -1][None, None].expand(B, 1, -1)
    logits = torch.cat([first, logits[:, :-1]], dim=1)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100,
                           reduction="sum")
    n = num_items if num_items is not None else (labels != -100).sum()
    return loss / n


def _trainer_class():
    from transformers import Trainer

    class PrefixSharingTrainer(Trainer):
        """HF Trainer whose loss runs the shared system prefix once per batch (:func:`shared_prefix_loss`)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = shared_prefix_loss(model, inputs["prefix_ids"], inputs["input_ids"], inputs["attention_mask"],
                                      inputs["labels"], num_items_in_batch)
            return (loss, None) if return_outputs else loss

    return PrefixSharingTrainer


def _load_or_make_data(spec: WarmStartSpec, data_path: Path, count_tokens) -> list:
    from fathom.agent.trajectory import Trajectory

    if data_path.is_file():
        trajs = [Trajectory.model_validate_json(line) for line in data_path.read_text().splitlines() if line]
        if trajs:
            return trajs
    from fathom.rl.stage import tool_backend
    from fathom.web.offline import ensure_offline_web

    web = ensure_offline_web(seed=spec.world_seed, n_pages=spec.world_pages)
    questions = draw_questions(web, spec.config)
    with tool_backend(spec.tools_url, seed=spec.world_seed, n_pages=spec.world_pages, query_llm="none",
                      fallback_passages=1) as url:
        trajs = asyncio.run(expert_trajectories(questions, url, count_tokens,
                                                max_result_chars=spec.config.max_result_chars))
    log.info("expert answered %d of %d questions through the tool server", len(trajs), len(questions))
    if not trajs:
        raise ConfigError(f"the expert reached no answer on {len(questions)} questions through the tool server "
                          f"({spec.tools_url or 'offline stack'}): is it serving the offline world seed "
                          f"{spec.world_seed}?")
    atomic_write_text(data_path, "".join(t.model_dump_json() + "\n" for t in trajs))
    return trajs


def train_warmstart(spec: WarmStartSpec) -> dict[str, Any]:
    """Imitate the expert (or pass the base through when disabled). Returns the summary in summary.json."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

    from fathom.checkpoints import mirror_callbacks, prepare_resume
    from fathom.rl.metrics import MetricsFileCallback, plot_metrics
    from fathom.rl.stage import resolve_model_dir

    cfg = spec.config
    out = Path(spec.out_dir)
    final = out / "final"
    if (final / ".complete").exists():
        return json.loads((out / "summary.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    model_dir = resolve_model_dir(spec.model)
    t0 = time.time()
    if not cfg.enabled:
        shutil.copytree(model_dir, final, dirs_exist_ok=True)
        (final / ".complete").write_text("warm start disabled: base policy\n")
        summary = {"enabled": False, "model_in": str(model_dir), "final": str(final)}
        atomic_write_json(out / "summary.json", summary)
        return summary

    fp = fingerprint(spec, model_dir)
    cached = cache_dir(fp)
    if spec.cache and (cached / "final" / ".complete").exists():
        log.info("reusing the finished warm start %s (same base weights, config and world)", cached)
        shutil.copytree(cached / "final", final, dirs_exist_ok=True)
        summary = {**json.loads((cached / "summary.json").read_text()), "final": str(final), "cached_from": str(cached),
                   "plots": [str(p) for p in sorted((cached / "plots").glob("*.png"))]}
        atomic_write_json(out / "summary.json", summary, default=str)
        return summary

    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    trajs = _load_or_make_data(spec, out / "data" / "expert.jsonl",
                               lambda s: len(tok(s, add_special_tokens=False).input_ids))
    rows, too_long = [], 0
    for t in trajs:
        ids, labels, prefix_len = trajectory_features(t, tok)
        if len(ids) > cfg.max_length:
            too_long += 1
            continue
        rows.append({"input_ids": ids, "labels": labels, "prefix_len": prefix_len})
    if not rows:
        raise ConfigError(f"no expert trajectory fits max_length={cfg.max_length} ({too_long} longer)")
    tokens = sum(len(r["input_ids"]) for r in rows)
    trained_tokens = sum(sum(1 for x in r["labels"] if x != -100) for r in rows)
    log.info("warm start on %d trajectories (%d tokens, %d trained)", len(rows), tokens, trained_tokens)

    batches = length_batches(rows, cfg.batch_size, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trainable = freeze_bottom(model, cfg.freeze_layers)
    args = TrainingArguments(
        output_dir=str(out), num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine", warmup_steps=max(1, int(0.05 * len(batches) * cfg.epochs / cfg.grad_accum)),
        per_device_train_batch_size=1, gradient_accumulation_steps=cfg.grad_accum,  # one item = one batch
        weight_decay=0.0, max_grad_norm=1.0, logging_steps=1, save_strategy="steps", save_steps=10,
        save_total_limit=1, report_to=[], use_cpu=not torch.cuda.is_available(), seed=cfg.seed,
        remove_unused_columns=False, disable_tqdm=False, dataloader_num_workers=0)
    metrics_path, checkpoint = prepare_resume(out, resume=spec.resume, mirror_uri=spec.checkpoint_uri)
    trainer = _trainer_class()(model=model, args=args, train_dataset=batches, data_collator=_Collator(tok.pad_token_id),
                               callbacks=[MetricsFileCallback(metrics_path), *mirror_callbacks(spec.checkpoint_uri)])
    trainer.train(resume_from_checkpoint=checkpoint)
    final.mkdir(parents=True, exist_ok=True)
    for p in model.parameters():
        p.requires_grad_(True)
    trainer.save_model(str(final))
    tok.save_pretrained(final)
    (final / ".complete").write_text("warm start\n")
    plots = plot_metrics(metrics_path, out / "plots", title="policy warm start (expert SFT)")
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    summary = {"enabled": True, "model_in": str(model_dir), "final": str(final), "trajectories": len(rows),
               "dropped_too_long": too_long, "tokens": tokens, "trained_tokens": trained_tokens,
               "trainable_parameters": trainable, "steps": trainer.state.global_step,
               "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
               "seconds": round(time.time() - t0, 1), "plots": [str(p) for p in plots],
               "config": cfg.model_dump(mode="json"), "fingerprint": fp}
    atomic_write_json(out / "summary.json", summary, default=str)
    if spec.cache:
        _store_in_cache(out, cached)
    return summary


def _store_in_cache(out: Path, cached: Path) -> None:
    """Publish final/ + summary.json under the fingerprint (atomic rename; a concurrent twin is harmless)."""
    import shutil

    if (cached / "final" / ".complete").exists():
        return
    tmp = cached.with_name(cached.name + f".tmp-{time.time_ns()}")
    shutil.copytree(out / "final", tmp / "final")
    if (out / "plots").is_dir():
        shutil.copytree(out / "plots", tmp / "plots")
    shutil.copy2(out / "summary.json", tmp / "summary.json")
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(cached)
    except OSError:  # another run published it first
        shutil.rmtree(tmp, ignore_errors=True)


def warmstart_stage(work: Path, *, preset: str, base_model: str, tools_url: str = "",
                    overrides: dict[str, Any] | None = None, checkpoint_uri: str = "") -> dict[str, Any]:
    """The pipeline step: preset (`cpu` | `cpu-smoke` | `gpu` = off) + overrides, the base model by role, folder
    or s3:// URI; returns the summary (its `final` is the policy folder; when disabled, `final` is None and
    `model_uri` the base model, passed on by reference). With `checkpoint_uri`, checkpoints are mirrored there as
    they are saved (a retry resumes from the newest complete one) and the policy is published to
    `<checkpoint_uri>/final`, returned as `model_uri` (passed on by reference, not copied). Fails loudly when nothing was learned
    from (no expert trajectory) — never passes an untrained model on as if it were warm-started."""
    from fathom.checkpoints import publish_final
    from fathom.rl.stage import materialise_model

    cfg = load_preset(preset).model_copy(update=overrides or {})
    if not cfg.enabled:  # RL-Zero: hand the base model on by reference (no multi-GB copy)
        return {"enabled": False, "final": None, "model_uri": base_model}
    spec = WarmStartSpec(out_dir=work, model=materialise_model(base_model, work), config=cfg,
                         tools_url=tools_url or None, checkpoint_uri=checkpoint_uri or None)
    summary = train_warmstart(spec)
    if cfg.enabled and not summary.get("trajectories"):
        raise ConfigError(f"warm start in {work} trained on no trajectory")
    if checkpoint_uri:
        summary["model_uri"] = publish_final(Path(summary["final"]), checkpoint_uri)
    return summary
