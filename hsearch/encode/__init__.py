"""The encoder contract and its implementations (BGE-M3 format, bundled defaults), long-context methods."""
from .encoder import Encoder, EncoderSpec
from .loader import ALIASES, DEFAULT_MODEL, load_encoder, resolve_model_dir
from .longctx import LongContext

__all__ = ["Encoder", "EncoderSpec", "LongContext", "load_encoder", "resolve_model_dir", "ALIASES", "DEFAULT_MODEL"]
