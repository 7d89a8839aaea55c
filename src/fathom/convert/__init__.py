"""Checkpoint conversion: a trained checkpoint → a clean, verified serving folder (see `convert.py`)."""

from fathom.convert.convert import ConvertConfig, ConvertError, ConvertResult, convert_checkpoint

__all__ = ["ConvertConfig", "ConvertError", "ConvertResult", "convert_checkpoint"]
