"""The synthesizer SFT stage: ``train_synthesizer(spec) -> summary``; outputs mirror the RL stage
(``checkpoint-N/``, ``runs/``, ``metrics.jsonl``, ``plots/``, ``final/`` with ``.complete``, ``summary.json``)."""

from __future__ import annotations

import json
import logging
import time
from importlib import resources
from pathlib import Path
from typing import Any

from fathom.errors import ConfigError, EmptyStageError
from fathom.sft.config import PRESETS, SynthSFTSpec

log = logging.getLogger(__name__)


def tiny_sft_rows(n: int = 8) -> list[dict]:
    """A tiny synthetic plan-then-write set (question + trace → <think>plan</think>report)."""
    topics = ["solar panel recycling", "urban heat islands", "open-source licensing", "battery supply chains",
              "coral reef restoration", "remote work productivity", "river flood forecasting", "vaccine cold chains"]
    rows = []
    for i in range(n):
        t = topics[i % len(topics)]
        url = f"http://atlas.fathom.test/{t.replace(' ', '-')}"
        rows.append({"messages": [
            {"role": "system", "content": "You write cited research reports from a search trace."},
            {"role": "user", "content": f"Question: What is known about {t}?\nTrace: searched '{t}', read {url}: "
                                        f"{t} is studied widely."},
            {"role": "assistant", "content": f"<think>S1: overview of {t}. Evidence map: {url} -> S1.</think>"
                                             f"# Executive Summary\n- {t} is studied widely. [{url}]\n"
                                             f"## S1 Overview\n{t.capitalize()} is studied widely. [{url}]\n"
                                             f"## Sources used\n{url}"}]})
    return rows


def load_sft_rows(path: Path) -> list[dict]:
    from fathom.rl.data import read_records

    rows = read_records(Path(path))
    bad = [i for i, r in enumerate(rows) if not isinstance(r.get("messages"), list) or not any(
        m.get("role") == "assistant" and m.get("content") for m in r["messages"])]
    if bad:
        raise ConfigError(f"{path}: {len(bad)} row(s) have no `messages` with an assistant turn (first: row {bad[0]})")
    return [{"messages": [{"role": m["role"], "content": m["content"]} for m in r["messages"]]} for r in rows]


TRACE_CUT = "\n[… trace shortened to fit the context …]\n"


def fit_rows(rows: list[dict], count_tokens, max_length: int, *, overhead: int = 8) -> tuple[list[dict], dict]:
    """Rows that fit ``max_length`` tokens with the report (the assistant turn) whole. A longer row loses the middle
    of its user turn (the search trace: its head keeps the question, its tail the last evidence) — truncating the
    rendered row would cut the report, the only tokens in the loss, and train on nothing. A row whose system turn and
    report alone do not fit is dropped. ``count_tokens(text) -> int`` (pure; the caller passes the tokenizer's)."""
    kept, cut, dropped = [], 0, 0
    for row in rows:
        msgs = row["messages"]
        sizes = [count_tokens(m["content"]) + overhead for m in msgs]
        excess = sum(sizes) - max_length
        if excess <= 0:
            kept.append(row)
            continue
        users = [i for i, m in enumerate(msgs) if m["role"] == "user"]
        room = sizes[users[-1]] - overhead - excess - count_tokens(TRACE_CUT) if users else -1
        if room < 64:
            dropped += 1
            continue
        text = msgs[users[-1]]["content"]
        head, tail = _token_prefix(text, room // 3, count_tokens), _token_suffix(text, room - room // 3, count_tokens)
        new = [dict(m) for m in msgs]
        new[users[-1]]["content"] = head + TRACE_CUT + tail
        kept.append({**row, "messages": new})
        cut += 1
    return kept, {"rows_in": len(rows), "trace_shortened": cut, "dropped_too_long": dropped, "kept": len(kept)}


def _token_prefix(text: str, n: int, count_tokens) -> str:
    """The longest prefix of ``text`` (cut at a character) with at most ``n`` tokens (binary search)."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if count_tokens(text[:mid]) <= n else (lo, mid - 1)
    return text[:lo]


def _token_suffix(text: str, n: int, count_tokens) -> str:
    return _token_prefix(text[::-1], n, lambda t: count_tokens(t[::-1]))[::-1]


def chat_template_text(name: str) -> str:
    p = Path(name).expanduser()
    if p.is_file():
        return p.read_text()
    try:
        return resources.files("trl").joinpath("chat_templates", f"{name}.jinja").read_text()
    except FileNotFoundError as exc:
        raise ConfigError(f"chat template {name!r} is neither a file nor a TRL template") from exc


def yarn_config(model_dir: Path, factor: float, original: int | None = None):
    """The model config with YaRN rope scaling (``rope_parameters`` in transformers 5) and the extended context:
    `original` × `factor` positions (`original` None = the config's own window)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model_dir)
    if factor > 1.0:
        rope = dict(getattr(cfg, "rope_parameters", None) or {})
        orig = int(original or rope.get("original_max_position_embeddings") or cfg.max_position_embeddings)
        rope.update({"rope_type": "yarn", "factor": float(factor), "original_max_position_embeddings": orig})
        cfg.rope_parameters = rope
        cfg.max_position_embeddings = int(orig * factor)
    return cfg


def train_synthesizer(spec: SynthSFTSpec) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from fathom.checkpoints import mirror_callbacks, prepare_resume
    from fathom.rl.metrics import MetricsFileCallback, plot_metrics
    from fathom.rl.stage import resolve_model_dir

    out = Path(spec.out_dir)
    final = out / "final"
    if (final / ".complete").exists() and not spec.resume:
        return json.loads((out / "summary.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    rows = load_sft_rows(spec.data) if spec.data else tiny_sft_rows()
    model_dir = resolve_model_dir(spec.model)
    from fathom.sft.gpu import resolve_runtime

    runtime = resolve_runtime(spec)  # FA2, sequence parallelism, YaRN window of the gpu preset
    kw = {"report_to": ["tensorboard"], "save_only_model": False, "disable_tqdm": True,
          **PRESETS[spec.preset], **runtime.args_kwargs(), **spec.overrides}
    args = SFTConfig(output_dir=str(out), assistant_only_loss=True, **kw)
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.chat_template = chat_template_text(spec.chat_template)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if args.max_length:
        rows, fit = fit_rows(rows, lambda t: len(tok(t, add_special_tokens=False).input_ids), args.max_length)
        log.info("synthesizer SFT rows fitted to %d tokens: %s", args.max_length, fit)
        if not rows:
            raise EmptyStageError("synthesizer-sft", fit, hint=f"no row fits max_length={args.max_length} with its "
                                  "report whole: raise max_length (SFT config) or shorten the corpus's traces")
    else:
        fit = {"rows_in": len(rows), "kept": len(rows)}
    cfg = yarn_config(model_dir, spec.yarn_factor, runtime.yarn_original_max_pos)
    model = AutoModelForCausalLM.from_pretrained(model_dir, config=cfg, dtype=torch.bfloat16 if args.bf16
                                                 else torch.float32, **runtime.model_kwargs())
    metrics_path, checkpoint = prepare_resume(out, resume=spec.resume, mirror_uri=spec.checkpoint_uri)
    t0 = time.time()
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         callbacks=[MetricsFileCallback(metrics_path), *mirror_callbacks(spec.checkpoint_uri)])
    trained = _trained_tokens(trainer.train_dataset)
    if trained == 0:
        raise EmptyStageError("synthesizer-sft", {**fit, "trained_tokens": 0},
                              hint="no report token reaches the loss (every assistant turn masked or truncated)")
    trainer.train(resume_from_checkpoint=checkpoint)
    if not trainer.is_world_process_zero():
        return {}
    final.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(final))
    tok.save_pretrained(final)
    (final / ".complete").write_text("synthesizer\n")
    plots = plot_metrics(metrics_path, out / "plots", title=f"synthesizer SFT ({spec.preset})")
    saved = json.loads((final / "config.json").read_text())
    summary = {"preset": spec.preset, "model_in": str(model_dir), "final": str(final), "rows": len(rows),
               "fit": fit, "trained_tokens": trained,
               "steps": trainer.state.global_step, "seconds": round(time.time() - t0, 1),
               "rope_parameters": saved.get("rope_parameters"), "max_position_embeddings":
                   saved.get("max_position_embeddings"), "plots": [str(p) for p in plots],
               "metrics": str(metrics_path),
               "last": next((r for r in reversed(trainer.state.log_history) if "loss" in r), {})}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _trained_tokens(dataset) -> int | None:
    """Tokens in the loss of TRL's prepared SFT dataset (``labels`` ≠ -100, after truncation), or None when it
    has no labels column."""
    if "labels" not in dataset.column_names:
        return None
    return int(sum(sum(1 for t in row if t != -100) for row in dataset["labels"]))


def sft_stage(work: Path, *, preset: str, base_model: str, data: Path, overrides: dict[str, Any] | None = None,
              checkpoint_uri: str = "", launch=None) -> dict[str, Any]:
    """Synthesizer SFT as a pipeline step (paths and URIs; see :func:`fathom.rl.stage.search_stage`): checkpoints
    mirrored to `checkpoint_uri` as they are saved, a retry resumes, the final model published to
    `<checkpoint_uri>/final` (the summary's `uri`)."""
    from fathom.rl.stage import materialise_model, run_training

    data = Path(data)
    data = data / "sft.jsonl" if (data / "sft.jsonl").exists() else data
    spec = SynthSFTSpec(out_dir=work, preset=preset, model=materialise_model(base_model, work), data=data,
                        resume=True, checkpoint_uri=checkpoint_uri or None, overrides=overrides or {})
    return run_training("synthesizer", spec, launch, train_synthesizer, checkpoint_uri=checkpoint_uri,
                        step="synthesizer-sft")
