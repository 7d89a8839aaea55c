"""KFP components of the data stages (thin wrappers: they map artifacts/parameters onto the library stages).

No `from __future__ import annotations` here: KFP reads the real annotation objects.

Every body imports `fathom` inside the function (lightweight Python components run the function's source in the
task's interpreter: the project image on a cluster, the current interpreter under `kfp.local`).
"""


from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Output

from components.base import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def duetqa_generate(
    n: int,
    config_json: str,
    tools_url: str,
    dataset: Output[Dataset],
    rl_dataset: Output[Dataset],
    metrics: Output[Metrics],
    card: Output[Markdown],
):
    """DuetQA self-play: `dataset` is the stage's output folder (hf/, data/, duetqa.jsonl, candidates.jsonl, work/),
    `rl_dataset` the rows for RL (prompt, answer, id, source). An empty `tools_url` starts the offline stack."""
    import json
    import shutil
    from pathlib import Path

    from fathom.selfplay.config import DuetQAConfig
    from fathom.selfplay.runner import run_duetqa

    cfg = DuetQAConfig.model_validate({**json.loads(config_json or "{}"), "n": int(n)})
    out = Path(dataset.path)
    res = run_duetqa(cfg, out, tools_url=tools_url or None, show_progress=False)
    shutil.copytree(out / "rl", rl_dataset.path, dirs_exist_ok=True)
    for stage, count in res.funnel.items():
        metrics.log_metric(f"funnel_{stage}", count)
    metrics.log_metric("kept", res.kept)
    metrics.log_metric("total_tokens", sum(u.get("prompt_tokens", 0) + u.get("completion_tokens", 0)
                                           for u in res.usage.values()))
    dataset.metadata.update({"rows": res.kept, "format": "hf+parquet+jsonl"})
    rl_dataset.metadata.update({"rows": res.kept, "columns": "prompt,answer,id,source"})
    shutil.copy(out / "README.md", card.path)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def sft_corpus(
    n: int,
    config_json: str,
    tools_url: str,
    dataset: Output[Dataset],
    metrics: Output[Metrics],
    card: Output[Markdown],
):
    """DeepResearch-SFT corpus: chat rows (messages: system, user, assistant) in `dataset` (hf/, data/, sft.jsonl,
    rejected.jsonl). An empty `tools_url` starts the offline stack."""
    import json
    import shutil
    from pathlib import Path

    from fathom.sftdata.config import SFTCorpusConfig
    from fathom.sftdata.runner import run_sft_corpus

    cfg = SFTCorpusConfig.model_validate({**json.loads(config_json or "{}"), "n": int(n)})
    out = Path(dataset.path)
    res = run_sft_corpus(cfg, out, tools_url=tools_url or None, show_progress=False)
    for stage, count in res.funnel.items():
        metrics.log_metric(f"funnel_{stage}", count)
    metrics.log_metric("accepted", res.accepted)
    dataset.metadata.update({"rows": res.accepted, "format": "hf+parquet+jsonl"})
    shutil.copy(out / "README.md", card.path)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def publish_dataset(dataset: Input[Dataset], uri: str, name: str) -> str:
    """Copy a dataset folder to `<uri>/<name>` in object storage (or a local path); atomic per object, manifest
    written last. Returns the destination URI."""
    from fathom import storage

    dest = f"{uri.rstrip('/')}/{name}"
    storage.upload(dataset.path, dest)
    return dest


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def decontaminate(dataset: Input[Dataset], clean: Output[Dataset], metrics: Output[Metrics], card: Output[Markdown]):
    """Drop and count every training question that overlaps an evaluation set (data/benchmarks/*.jsonl and the
    held-out offline world) by normalised exact match and n-gram overlap; fails when nothing is left."""
    from pathlib import Path

    from fathom.selfplay.decontam import decontaminate_folder

    res = decontaminate_folder(Path(dataset.path), Path(clean.path))
    for key, value in res.model_dump().items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(key, float(value))
    clean.metadata.update({"rows": res.kept})
    Path(card.path).write_text((Path(clean.path) / "README.md").read_text())
