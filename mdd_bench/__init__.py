"""mdd-bench: a benchmark suite for multimodal (image-text) dataset distillation."""

__version__ = "0.1.0"
