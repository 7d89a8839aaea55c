"""The Fathom-Search agent: the released model's exact prompt/turn format, tool-call parsing, the loop, trajectories.

    from fathom.agent import AgentConfig, HttpTools, run_agent
    traj = await run_agent("question", policy_client, HttpTools(ToolClient(url)), AgentConfig(max_turns=8))
"""

from fathom.agent.format import (
    PRESETS,
    TEMPLATE_VERSION,
    build_prompt,
    format_tool_response_turn,
    load_template,
    preset_schemas,
)
from fathom.agent.loop import AgentConfig, run_agent
from fathom.agent.parse import ParsedCall, ParseError, extract_boxed, parse_tool_calls, validate_call
from fathom.agent.tools import FunctionTools, HttpTools, Tools
from fathom.agent.trajectory import Segment, ToolCallRecord, ToolResult, Trajectory, Turn
from fathom.agent.turn import TurnEngine, TurnRules, run_calls

__all__ = [
    "PRESETS", "TEMPLATE_VERSION", "AgentConfig", "FunctionTools", "HttpTools", "ParseError", "ParsedCall",
    "Segment", "ToolCallRecord", "ToolResult", "Tools", "Trajectory", "Turn", "TurnEngine", "TurnRules",
    "build_prompt", "extract_boxed",
    "format_tool_response_turn", "load_template", "parse_tool_calls", "preset_schemas", "run_agent",
    "run_calls", "validate_call",
]
