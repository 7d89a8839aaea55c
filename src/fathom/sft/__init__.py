"""Synthesizer SFT (Fathom-Synthesizer): TRL SFTTrainer on DeepResearch-SFT `messages` rows with assistant-only
loss, YaRN ×2 context extension recorded in the saved config, packing and gradient checkpointing."""
