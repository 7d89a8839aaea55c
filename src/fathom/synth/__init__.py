"""The plan-then-write synthesizer (Fathom-Synthesizer): trace cleaning, prompt, report parsing, citation checks.

    rep = await synthesize(question, trajectory, make_client("local:smollm2"))
    rep.report, rep.unsupported_rate, rep.missing_sections
"""

from fathom.synth.clean import clean_trace, find_urls, normalize_url, tool_calls_json, trajectory_urls
from fathom.synth.prompt import (
    SYNTH_TEMPLATE_VERSION,
    build_synth_messages,
    load_synth_template,
    render_user_message,
)
from fathom.synth.report import MANDATORY_SECTIONS, Report, parse_report, split_plan, synthesize

__all__ = [
    "MANDATORY_SECTIONS", "SYNTH_TEMPLATE_VERSION", "Report", "build_synth_messages", "clean_trace", "find_urls",
    "load_synth_template", "normalize_url", "parse_report", "render_user_message", "split_plan", "synthesize",
    "tool_calls_json", "trajectory_urls",
]
