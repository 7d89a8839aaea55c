"""DuetQA: multi-agent self-play generation of hard, search-dependent multi-hop QA pairs (method.md §1).

    theme bank + seed bank -> generate (M1/M2 with search) -> candidate checks -> obfuscate (M3, no search)
      -> verify (M1 and M2 with search both correct and agreeing, M3 without search failing) -> dedup -> dataset

Entry points: :func:`fathom.selfplay.runner.run_duetqa` (library), ``fathom duetqa`` (CLI),
``components.data.duetqa_generate`` (KFP).
"""
