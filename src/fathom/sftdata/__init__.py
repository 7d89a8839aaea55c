"""DeepResearch-SFT: plan-then-write report data for the synthesizer (method.md §5.2).

    open-ended seed x sampled theme -> rewritten question -> search agent trace -> teacher writes
    <think>plan</think>report -> structure/citation filters -> chat SFT rows (system, user, assistant)

Entry points: :func:`fathom.sftdata.runner.run_sft_corpus`, ``fathom sft-corpus``, ``components.data.sft_corpus``.
"""
