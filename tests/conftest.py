"""Shared fixtures. The embedded model is prepared (converted once) and loaded once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """Folder of the embedded SmolLM2 model in Hugging Face format (converted on first use)."""
    from fathom.llm.embedded import prepare_embedded

    return prepare_embedded()


@pytest.fixture(scope="session")
def embedded_client(embedded_model_dir):
    """The in-process client of the embedded model (weights loaded once per session)."""
    from fathom.llm.local import LocalClient

    return LocalClient(embedded_model_dir, name="local:smollm2")
