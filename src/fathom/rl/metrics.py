"""Training metrics: a ``metrics.jsonl`` writer (a TrainerCallback; TensorBoard comes from ``report_to``), and PNG
plots in the style of the paper's Fig. 5–7 (gradient norm and entropy; tool calls per rollout by label; response
length), plus reward/solve-rate/zero-spread/replay/pruning curves."""

from __future__ import annotations

import json
import math
from pathlib import Path

from transformers import TrainerCallback

PLOTS: dict[str, list[tuple[str, str]]] = {
    # file: [(metric key, label)]
    "fig5_grad_norm_entropy": [("grad_norm", "gradient norm"), ("entropy", "policy entropy")],
    "fig6_tool_calls": [("tools/UniqueSearch", "unique search"), ("tools/RedundantSearch", "redundant search"),
                        ("tools/Exploration", "exploration"), ("tools/Verification", "verification"),
                        ("tools/RedundantQuery", "redundant query")],
    "fig7_response_length": [("rapo/response_tokens", "policy tokens / rollout"),
                             ("completions/mean_length", "completion length")],
    "reward": [("reward", "reward"), ("rewards/format/mean", "format"), ("rewards/answer/mean", "answer"),
               ("rapo/solve_rate", "solve rate")],
    "rapo": [("rapo/zero_spread_frac", "zero-spread groups"), ("rapo/adv_scale", "advantage scale"),
             ("rapo/replay_insertions", "replay insertions"), ("rapo/pruned", "pruned prompts")],
    "loss": [("loss", "loss")],
}


class MetricsFileCallback(TrainerCallback):
    """Appends every log event (with ``step``) to ``path`` as one JSON line (main process only)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        row = {"step": state.global_step, "epoch": state.epoch}
        row.update({k: v for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)})
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def read_metrics(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop rows after ``last_step`` (a resumed run re-logs the steps after its checkpoint)."""
    rows = [r for r in read_metrics(path) if r.get("step", 0) <= last_step]
    from fathom.storage import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def plot_metrics(metrics_path: Path, out_dir: Path, *, title: str = "") -> list[Path]:
    """One PNG per entry of :data:`PLOTS` that has data; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_metrics(metrics_path) if "train_runtime" not in r]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, series in PLOTS.items():
        present = [(k, lab) for k, lab in series if any(k in r for r in rows)]
        if not present:
            continue
        fig, axes = plt.subplots(1, len(present) if name == "fig5_grad_norm_entropy" else 1,
                                 figsize=(5 * (len(present) if name == "fig5_grad_norm_entropy" else 1.4), 3.2),
                                 squeeze=False)
        for j, (key, label) in enumerate(present):
            ax = axes[0][j if name == "fig5_grad_norm_entropy" else 0]
            pts = [(r["step"], r[key]) for r in rows if key in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=label)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if name == "fig5_grad_norm_entropy":
                ax.set_title(label)
        if name != "fig5_grad_norm_entropy":
            axes[0][0].legend(fontsize=8)
            axes[0][0].set_title(name.replace("_", " "))
        if title:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def plots_html(paths: list[Path], title: str = "Training curves") -> str:
    """An HTML page with the PNGs embedded as base64 (the KFP HTML artifact)."""
    import base64

    imgs = "".join(f'<figure><img src="data:image/png;base64,{base64.b64encode(Path(p).read_bytes()).decode()}"/>'
                   f"<figcaption>{Path(p).stem}</figcaption></figure>" for p in paths)
    return f"<html><head><meta charset='utf-8'><title>{title}</title></head><body><h1>{title}</h1>{imgs}</body></html>"


def resume_metrics(out: Path, resume: bool) -> tuple[Path, str | None]:
    """`OUT/metrics.jsonl` and the newest checkpoint to resume from (None: a fresh run). On resume the metrics are
    cut back to the checkpoint's step; a fresh run starts an empty file."""
    from transformers.trainer_utils import get_last_checkpoint

    path = Path(out) / "metrics.jsonl"
    checkpoint = get_last_checkpoint(str(out)) if resume and Path(out).is_dir() else None
    if checkpoint:
        truncate_metrics(path, json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"])
    elif path.exists():
        path.unlink()
    return path, checkpoint
