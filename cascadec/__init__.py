"""cascadec: a declarative compiler for multi-stage LLM post-training cascades."""
__version__ = "0.1.0"
