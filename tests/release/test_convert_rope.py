"""YaRN rope helpers: worked examples, and the reference's flat override shown to be a silent no-op."""

import json

import pytest

from fathom.convert.rope import (
    apply_yarn,
    check_rope_override,
    yarn_context_length,
    yarn_parameters,
    yarn_scaling,
)
from fathom.errors import ConfigError


def test_synthesizer_values():
    assert yarn_scaling(2.0, 40960) == {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 40960}
    assert yarn_parameters(2.0, 40960, 1e6)["rope_theta"] == 1e6
    assert yarn_context_length(2.0, 40960) == 81920


def test_apply_yarn_writes_both_keys_and_keeps_theta():
    cfg = {"model_type": "qwen3", "max_position_embeddings": 40960,
           "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}
    out = apply_yarn(cfg, 2.0, 40960)
    assert out["rope_scaling"] == {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 40960}
    assert out["rope_parameters"] == {**out["rope_scaling"], "rope_theta": 1000000.0}
    assert out["rope_theta"] == 1000000.0 and out["max_position_embeddings"] == 81920
    assert cfg["max_position_embeddings"] == 40960  # input untouched


def test_flat_override_rejected_nested_accepted():
    flat = '{"rope_type":"yarn","factor":2.0,"original_max_position_embeddings":40960}'  # the reference's flag
    with pytest.raises(ConfigError, match="top level"):
        check_rope_override(flat)
    nested = {"rope_scaling": json.loads(flat)}
    assert check_rope_override(json.dumps(nested)) == nested
    with pytest.raises(ConfigError, match="expected a dict"):
        check_rope_override({"rope_scaling": {"factor": 2.0}})
    with pytest.raises(ConfigError):
        yarn_scaling(0.5, 40960)


def test_transformers_ignores_flat_keys_but_reads_nested(tmp_path):
    """Why the flat form is a bug: the config parser keeps default RoPE when the keys are at the top level."""
    from transformers import AutoConfig, LlamaConfig

    base = LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       vocab_size=128, max_position_embeddings=512).to_dict()
    flat = {**base, "rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 512}
    (tmp_path / "config.json").write_text(json.dumps(flat))
    assert AutoConfig.from_pretrained(tmp_path).rope_parameters["rope_type"] == "default"
    legacy = {k: v for k, v in apply_yarn(base, 2.0, 512).items() if k != "rope_parameters"}  # rope_scaling only
    (tmp_path / "config.json").write_text(json.dumps(legacy))
    rope = AutoConfig.from_pretrained(tmp_path).rope_parameters
    assert rope["rope_type"] == "yarn" and rope["factor"] == 2.0 and rope["original_max_position_embeddings"] == 512
