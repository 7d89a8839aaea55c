"""fathom-pipelines: train, evaluate and serve Fathom-DeepResearch style agents."""

__version__ = "0.1.0"
