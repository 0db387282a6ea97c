"""The encoder contract and its implementations (BGE-M3 format, bundled defaults)."""
from .encoder import Encoder, EncoderSpec
from .loader import ALIASES, DEFAULT_MODEL, load_encoder, resolve_model_dir

__all__ = ["Encoder", "EncoderSpec", "load_encoder", "resolve_model_dir", "ALIASES", "DEFAULT_MODEL"]
