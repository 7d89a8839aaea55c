"""The data pipeline: DuetQA self-play and the DeepResearch-SFT corpus (independent, so they run in parallel),
optionally published to object storage.

    fathom pipeline compile --out build/        # IR YAML
    fathom pipeline run data --local            # kfp.local, embedded model, offline web, LOCAL_ARGUMENTS
"""


import json

from kfp import dsl

from components.base import S3_ENV, S3_SECRET, SECRETS, with_s3, with_secrets  # noqa: F401 - re-exported
from components.data import duetqa_generate, publish_dataset, sft_corpus

# Tiny budgets for the embedded one-box run (SmolLM2 on CPU, offline stack per step).
_EMBEDDED_AGENT = {"max_turns": 1, "max_tokens_per_turn": 48, "max_total_tokens": 2048, "min_answer_tokens": 16}
LOCAL_ARGUMENTS = {
    "n_duetqa": 1,
    "n_sft": 1,
    "duetqa_config": json.dumps({"agent": _EMBEDDED_AGENT, "compose_max_tokens": 64, "obfuscate_max_tokens": 48,
                                 "no_search_max_tokens": 24, "max_in_flight": 1}),
    "sft_config": json.dumps({"agent": _EMBEDDED_AGENT, "rewrite_max_tokens": 32, "teacher_max_tokens": 64,
                              "teacher_max_prompt_tokens": 2048, "max_in_flight": 1}),
    "tools_url": "",
    "output_uri": "",
}


@dsl.pipeline(name="fathom-data", description="DuetQA self-play QA pairs and the DeepResearch-SFT corpus.")
def data_pipeline(
    n_duetqa: int = 5000,
    n_sft: int = 2500,
    duetqa_config: str = "{}",
    sft_config: str = "{}",
    tools_url: str = "",
    output_uri: str = "",
):
    """`*_config` are JSON DuetQAConfig / SFTCorpusConfig (roles, budgets, filters); `tools_url` a tool server
    (empty: each step starts the offline stack); `output_uri` (s3://bucket/prefix) publishes both datasets."""
    duet = duetqa_generate(n=n_duetqa, config_json=duetqa_config, tools_url=tools_url)
    duet.set_display_name("duetqa self-play").set_caching_options(False).set_retry(num_retries=2)
    duet.set_cpu_limit("4").set_memory_limit("16G")
    with_secrets(duet, SECRETS)  # role keys (solvers, obfuscator)
    sft = sft_corpus(n=n_sft, config_json=sft_config, tools_url=tools_url)
    sft.set_display_name("deepresearch-sft corpus").set_caching_options(False).set_retry(num_retries=2)
    sft.set_cpu_limit("4").set_memory_limit("16G")
    with_secrets(sft, SECRETS)  # role keys (teacher)
    with dsl.If(output_uri != "", name="publish"):
        p1 = publish_dataset(dataset=duet.outputs["dataset"], uri=output_uri, name="duetqa")
        p1.set_display_name("publish duetqa").set_retry(num_retries=3)
        p2 = publish_dataset(dataset=sft.outputs["dataset"], uri=output_uri, name="sft")
        p2.set_display_name("publish sft").set_retry(num_retries=3)
        for t in (p1, p2):
            t.set_caching_options(False)
            with_s3(t)


PIPELINE = data_pipeline
