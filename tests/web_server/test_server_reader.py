"""Query-LLM reading: output parsing (worked examples), grounding, and the deterministic fallback."""

from __future__ import annotations

from fathom.web.reader import build_messages, fallback_reading, parse_reading, split_passages

PAGE = """Mount Veyra

Mount Veyra is a dormant volcano on the island of Kestrel. It rises 2,417 metres above sea level and last erupted
in 1893, when ash fell on the harbour town of Orlen for eleven days.

The first recorded ascent of Mount Veyra was made on 14 March 2026 by the climber Ada Lindqvist, who reached the
summit crater after a nine-hour climb from the northern ridge.

The mountain is home to the Veyra pika, a small mammal found nowhere else. Park rangers count about 340 animals
each spring.

Orlen's harbour exports basalt from quarries on the lower slopes; the trade employed 1,200 people in 2025."""

GOAL = "When was the first ascent of Mount Veyra and who made it?"


def test_plain_sections():
    out = """Rationale: The second paragraph describes the first ascent.
Evidence:
- The first recorded ascent of Mount Veyra was made on 14 March 2026 by the climber Ada Lindqvist
- who reached the summit crater after a nine-hour climb from the northern ridge.
Summary: Ada Lindqvist made the first ascent on 14 March 2026."""
    r = parse_reading(out, PAGE)
    assert r is not None and r.extraction == "llm"
    assert r.rationale.startswith("The second paragraph")
    assert len(r.evidence) == 2 and "14 March 2026" in r.evidence[0]
    assert r.summary == "Ada Lindqvist made the first ascent on 14 March 2026."


def test_markdown_decorations_numbering_quotes_and_colons_inside_sections():
    out = """## Rationale
The page mentions the ascent. Note: only one climber is named.

**Evidence:**
1. "The first recorded ascent of Mount Veyra was made on 14 March 2026 by the climber Ada Lindqvist"
2. “It rises 2,417 metres above sea level” (source: https://atlas.fathom.test/veyra)

**Summary:** First ascent: 14 March 2026, by Ada Lindqvist."""
    r = parse_reading(out, PAGE)
    assert r is not None
    assert "Note: only one climber" in r.rationale  # 'Note:' does not end the section (the reference regex bug)
    assert r.evidence[0].startswith("The first recorded ascent") and not r.evidence[0].startswith('"')
    assert len(r.evidence) == 2
    assert r.summary.startswith("First ascent: 14 March 2026")


def test_json_output():
    out = ('Sure! {"rationale": "ascent paragraph", "evidence": ["The first recorded ascent of Mount Veyra was made '
           'on 14 March 2026"], "summary": "14 March 2026"}')
    r = parse_reading(out, PAGE)
    assert r is not None and r.evidence == ["The first recorded ascent of Mount Veyra was made on 14 March 2026"]


def test_junk_placeholders_and_invented_evidence_are_rejected():
    assert parse_reading("", PAGE) is None
    assert parse_reading("I am a helpful assistant. How can I help you today?", PAGE) is None
    assert parse_reading("Rationale: (not found)\nEvidence: (not found)\nSummary: (not found)", PAGE) is None
    invented = "Evidence:\n- The summit was first reached by Edmund Hillary in 1953 with Tenzing Norgay.\nSummary: 1953"
    assert parse_reading(invented, PAGE) is None
    echo = "Rationale:\nEvidence:\nSummary:"
    assert parse_reading(echo, PAGE) is None


def test_first_occurrence_of_a_section_wins():
    out = ("Evidence: The first recorded ascent of Mount Veyra was made on 14 March 2026\nSummary: ok\n"
           "Evidence: Veyra pika junk junk junk")
    r = parse_reading(out, PAGE)
    assert r is not None and r.evidence == ["The first recorded ascent of Mount Veyra was made on 14 March 2026"]


def test_fallback_picks_the_relevant_passage():
    r = fallback_reading(PAGE, GOAL, k=2, reason="test")
    assert r.extraction == "fallback" and r.note == "test"
    assert "14 March 2026" in r.evidence[0] and "Ada Lindqvist" in r.evidence[0]
    assert len(r.evidence) == 2
    assert "ascent" in r.summary
    r2 = fallback_reading(PAGE, "How many pika animals do rangers count?", k=1)
    assert "340" in r2.evidence[0]


def test_fallback_without_overlap_returns_the_opening():
    r = fallback_reading(PAGE, "zzz qqq", k=1)
    assert r.evidence and r.evidence[0].startswith("Mount Veyra")
    assert "does not appear" in r.summary


def test_split_passages_bounds_lengths():
    long_para = " ".join(f"Sentence number {i} talks about basalt quarries." for i in range(200))
    unpunctuated = "x" * 3000
    parts = split_passages(PAGE + "\n\n" + long_para + "\n\n" + unpunctuated)
    assert all(len(p) <= 800 for p in parts)
    assert any("Ada Lindqvist" in p for p in parts)
    assert split_passages("") == []


def test_prompt_contains_goal_url_and_page():
    msgs = build_messages("http://a.test/x", GOAL, PAGE)
    assert msgs[0]["role"] == "system" and msgs[1]["role"] == "user"
    assert GOAL in msgs[1]["content"] and "http://a.test/x" in msgs[1]["content"] and "Ada Lindqvist" in msgs[1]["content"]
    for header in ("Rationale:", "Evidence:", "Summary:"):
        assert header in msgs[1]["content"]
