"""RAPO training of the search agent (Fathom-Search): rewards, RAPO pieces, the step-level reward, multi-turn
tool rollouts in the Fathom format, the TRL trainer subclass, the stage-2 filter and the `fathom train` CLI.

Pure algorithm cores (import without torch/TRL): :mod:`fathom.rl.rewards`, :mod:`fathom.rl.step_reward`,
:mod:`fathom.rl.rapo`. Orchestration: :mod:`fathom.rl.rollout`, :mod:`fathom.rl.trainer`, :mod:`fathom.rl.stage`.
"""
