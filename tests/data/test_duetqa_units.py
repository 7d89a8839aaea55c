"""Pure units of DuetQA: banks and theme sampling, prompts, parsing, verdict logic, filters, dedup, leakage."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest

from fathom.errors import ConfigError
from fathom.selfplay.banks import load_seeds, load_themes, plan_item, sample_themes
from fathom.selfplay.config import DEFAULT_SEEDS, DEFAULT_THEMES, DuetQAConfig, FilterConfig
from fathom.selfplay.dedup import Deduper, LeakageIndex, dedup, exact_dedup
from fathom.selfplay.filters import check_answer, check_candidate, check_hops, check_question
from fathom.selfplay.generate import Candidate, Hop, parse_candidate, parse_date
from fathom.selfplay.judge import Verdict, judge_answer, parse_judgement
from fathom.selfplay.obfuscate import EXEMPLARS, check_obfuscation, clean_obfuscation, obfuscation_messages
from fathom.selfplay.text import answers_match, normalize_answer
from fathom.selfplay.verify import decide


def test_duetqa_banks_shipped():
    themes = load_themes(DEFAULT_THEMES)
    assert len(themes) >= 200 and len(set(t.lower() for t in themes)) == len(themes)
    seeds = load_seeds(DEFAULT_SEEDS)
    assert 90 <= len(seeds) <= 120
    assert len({s.id for s in seeds}) == len(seeds) and all(s.question.endswith("?") for s in seeds)


def test_duetqa_user_banks(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("# comment\nA\n\nb # trailing comment\nB\n")
    assert load_themes(p) == ["A", "b"]  # case-insensitive dedup, comments dropped
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ConfigError, match="no themes"):
        load_themes(tmp_path / "empty.txt")
    bad = tmp_path / "s.jsonl"
    bad.write_text('{"id": "x", "question": "q?"}\n{"nope": 1}\n')
    with pytest.raises(ConfigError, match=":2:"):
        load_seeds(bad)


def test_duetqa_theme_sampling_uniform_k_and_distinct():
    themes = [f"t{i}" for i in range(200)]
    rng = random.Random(0)
    ks = []
    for _ in range(600):
        s = sample_themes(themes, rng, [5, 6, 7])
        assert len(set(s)) == len(s)
        ks.append(len(s))
    counts = {k: ks.count(k) for k in (5, 6, 7)}
    assert set(ks) == {5, 6, 7} and all(150 < c < 250 for c in counts.values())
    with pytest.raises(ConfigError):
        sample_themes(["a", "b"], rng, [5])


def test_duetqa_item_plans_are_deterministic():
    themes, seeds = load_themes(DEFAULT_THEMES), load_seeds(DEFAULT_SEEDS)
    kw = dict(seed=3, themes=themes, seeds=seeds, mode="both", seeded_fraction=0.5, k_choices=[5, 6, 7])
    a, b = plan_item(7, **kw), plan_item(7, **kw)
    assert a == b and a.id == "dq-3-000007" and a.generator == "m2"
    modes = {plan_item(i, **kw).mode for i in range(40)}
    assert modes == {"mixture", "seeded"}
    assert all(plan_item(i, **kw).seed is not None for i in range(40) if plan_item(i, **kw).mode == "seeded")


def test_duetqa_obfuscation_prompt_has_rules_and_exemplars():
    msgs = obfuscation_messages("Who founded X in March 2025?")
    assert msgs[0]["role"] == "system" and "coarse intervals" in msgs[0]["content"]
    assert "magnitudes" in msgs[0]["content"] and "descriptors" in msgs[0]["content"]
    assert len(msgs) == 2 + 2 * len(EXEMPLARS)
    assert [m["role"] for m in msgs[1:-1]] == ["user", "assistant"] * len(EXEMPLARS)
    assert msgs[-1] == {"role": "user", "content": "Question: Who founded X in March 2025?"}


def test_duetqa_obfuscation_cleaning_and_checks():
    assert clean_obfuscation('Rewritten question: "Which firm, in early 2025, bought it?"\n\nextra') == \
        "Which firm, in early 2025, bought it?"
    q = "Which company bought the startup in March 2025?"
    assert check_obfuscation(q, "", "Acme") == "obfuscation_empty"
    assert check_obfuscation(q, "Which?", "Acme") == "obfuscation_too_short"
    assert check_obfuscation(q, "Which firm, Acme Corp, bought a young company in early 2025?", "Acme Corp") == \
        "obfuscation_leaks_answer"
    assert check_obfuscation(q, "Which firm bought a young company in early 2025?", "Acme") is None


def test_duetqa_candidate_parsing():
    text = ('Sure! ```json\n{"question": "Who  won?", "answer": 1987, "hops": [{"fact": "f", "url": "http://a/1", '
            '"date": "2025-01-02"}], "themes_used": ["x"]}\n```')
    cand, reason = parse_candidate(text)
    assert reason is None and cand.question == "Who won?" and cand.answer == "1987" and cand.hops[0].url == "http://a/1"
    assert parse_candidate("no json here") == (None, "candidate_no_json")
    assert parse_candidate('{"foo": 1}')[1] == "candidate_invalid_json"
    assert parse_candidate('{"question": "q?", "answer": ""}')[1] == "candidate_empty_field"
    assert parse_date("2025-03") == dt.date(2025, 3, 1) and parse_date("March 14, 2025") == dt.date(2025, 3, 14)
    assert parse_date("sometime in 2023") == dt.date(2023, 1, 1) and parse_date(None) is None


def test_duetqa_answer_matching():
    assert answers_match("The Beatles", "the beatles.") == "normalized"
    assert answers_match("1,000", "1000") == "normalized"
    assert answers_match("Paris", "Paris") == "exact"
    assert answers_match("Paris", "Lyon") is None and answers_match("x", None) is None
    assert normalize_answer("An  Apple!") == "apple"
    assert parse_judgement("Yes, they match") is True and parse_judgement("no.") is False
    assert parse_judgement("maybe") is None


def _v(answer, correct):
    return Verdict(answer=answer, correct=correct, method="exact" if correct else "llm")


@pytest.mark.parametrize("m1,m2,m3,agree,expected", [
    (_v("a", True), _v("a", True), _v("b", False), _v("a", True), (True, None)),
    (_v("a", True), _v("a", True), _v("a", True), _v("a", True), (False, "no_search_solver_correct")),
    (_v("x", False), _v("a", True), _v("b", False), _v("a", False), (False, "m1_incorrect")),
    (_v("a", True), _v("y", False), _v("b", False), _v("y", False), (False, "m2_incorrect")),
    (_v("a", True), _v("a.", True), _v(None, False), _v("a.", False), (False, "m1_m2_disagree")),
    (_v(None, False), _v("a", True), _v(None, False), _v(None, False), (False, "m1_no_answer")),
    (_v("a", True), _v(None, False), _v(None, False), _v(None, False), (False, "m2_no_answer")),
])
def test_duetqa_verdict_logic(m1, m2, m3, agree, expected):
    assert decide(m1, m2, m3, agree) == expected


class _Judge:
    """A judge endpoint double at the LLMClient boundary (replies are canned)."""

    model = "judge"

    def __init__(self, reply=None, exc=None):
        self.reply, self.exc, self.calls = reply, exc, 0

    async def chat(self, messages, **kw):
        from fathom.llm.base import Completion

        self.calls += 1
        if self.exc:
            raise self.exc
        return Completion(text=self.reply)


async def test_duetqa_judge_fallbacks():
    from fathom.errors import LLMError

    j = _Judge("yes")
    v = await judge_answer("q", "Paris", "paris", j, transcript_ref="r1")
    assert v.correct and v.method == "normalized" and j.calls == 0 and v.transcript_ref == "r1"
    v = await judge_answer("q", "Paris", "the French capital", j)
    assert v.correct and v.method == "llm" and v.judge_raw == "yes"
    v = await judge_answer("q", "Paris", "Lyon", _Judge("hmm, hard to say"))
    assert not v.correct and v.method == "fallback"
    v = await judge_answer("q", "Paris", "Lyon", _Judge(exc=LLMError("down")))
    assert not v.correct and v.method == "fallback" and "down" in v.judge_raw
    assert (await judge_answer("q", "Paris", None, j)).method == "no_answer"


def test_duetqa_candidate_filters():
    f = FilterConfig()
    cutoff = dt.date(2024, 1, 1)
    assert check_answer("", f) == "answer_empty"
    assert check_answer("one two three four five six seven eight nine", f) == "answer_too_many_words"
    assert check_answer("Yes", f) == "answer_trivial"
    assert check_answer("Brevostwick", f) is None
    assert check_question("Short?", "x", f) == "question_too_short"
    assert check_question("Which city is the capital of Raesoland today?", "Raesoland", f) == \
        "question_contains_answer"
    hops = [Hop(fact="a", url="http://s.test/1", date="2020-01-01"), Hop(fact="b", url="http://t.test/2",
                                                                          date="2025-02-01")]
    cand = Candidate(question="Which city is the capital of the country X lies in?", answer="Y", hops=hops)
    assert check_candidate(cand, f, cutoff, explored=["http://s.test/1", "http://t.test/2"]) is None
    assert check_hops(cand, f, cutoff, explored=["http://s.test/1"]) == "hop_url_not_explored"
    assert check_hops(cand, f, cutoff, explored=["http://S.test/1/", "http://t.test/2#frag"]) is None
    old = cand.model_copy(update={"hops": [h.model_copy(update={"date": "2019"}) for h in hops]})
    assert check_hops(old, f, cutoff, None) == "no_hop_after_cutoff"
    same = cand.model_copy(update={"hops": [hops[0], hops[0].model_copy(update={"date": "2025"})]})
    assert check_hops(same, f, cutoff, None) == "too_few_sources"
    two_domains = FilterConfig(min_distinct_domains=2)
    one_dom = cand.model_copy(update={"hops": [hops[0], Hop(fact="c", url="http://s.test/3", date="2025")]})
    assert check_hops(one_dom, two_domains, cutoff, None) == "too_few_domains"
    assert check_hops(cand.model_copy(update={"hops": hops[:1]}), f, cutoff, None) == "too_few_hops"


def test_duetqa_dedup_exact_and_near():
    items = [
        ("a", "Which city hosted the 2025 science fair organised by the Brithia academy?"),
        ("b", "which city hosted the 2025 Science Fair organised by the Brithia academy"),  # exact after norm
        ("c", "Which city hosted the 2025 science fair organised by the Brithia academy of arts?"),  # near
        ("d", "Who is the mayor of the host city of the 2025 Brovoux Summit?"),
    ]
    kept, dropped = dedup(items, threshold=0.7)
    assert kept == ["a", "d"]
    assert dropped["b"] == ("exact_duplicate", "a") and dropped["c"] == ("near_duplicate", "a")
    kept_exact, dropped_exact = exact_dedup(items)
    assert kept_exact == ["a", "c", "d"] and dropped_exact == {"b": ("exact_duplicate", "a")}
    d = Deduper(0.8)
    assert d.add("x", "") is None and d.add("y", "") == ("exact_duplicate", "x")


def test_duetqa_leakage_against_benchmark_files(tmp_path):
    (tmp_path / "bench.jsonl").write_text(
        json.dumps({"id": 1, "question": "Who was the first woman to win two Nobel Prizes in different sciences?",
                    "answer": "Marie Curie"}) + "\n" + json.dumps({"id": 2, "question": "What is 2+2?"}) + "\n")
    idx = LeakageIndex.from_dir(tmp_path, threshold=0.7)
    assert idx.size == 2 and idx.files == ["bench.jsonl"]
    assert idx.match("Who was the first woman to win two Nobel prizes in different sciences") == "bench:1"
    assert idx.match("Who was the first woman to win two Nobel Prizes in different sciences, and when?") == "bench:1"
    assert idx.match("Which river flows through the capital of Raesoland?") is None


def test_duetqa_leakage_repo_benchmarks_load():
    from fathom.selfplay.dedup import default_benchmarks_dir

    folder = default_benchmarks_dir()
    assert folder is not None and any(folder.glob("*.jsonl"))
    idx = LeakageIndex.from_dir(folder)
    first = json.loads(next(iter(sorted(folder.glob("*.jsonl")))).read_text().splitlines()[0])
    assert idx.size > 100 and idx.match(first["question"]) is not None


def test_duetqa_config_validates_roles():
    with pytest.raises(ValueError):
        DuetQAConfig(m1="nonsense")
    cfg = DuetQAConfig(m1="http://h:1/v1#model@KEY")
    assert cfg.roles()["m1"].api_key_env == "KEY"
