"""Encoders: timm image backbones (pooled features) and frozen transformers text encoders."""

from mdd_bench.models.image import create_image_encoder, image_feature_dim, list_image_encoders
from mdd_bench.models.text import TextEncoder, create_text_encoder, list_text_encoders, text_feature_dim

__all__ = [
    "TextEncoder",
    "create_image_encoder",
    "create_text_encoder",
    "image_feature_dim",
    "list_image_encoders",
    "list_text_encoders",
    "text_feature_dim",
]
