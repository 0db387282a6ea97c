"""The encoder contract and its implementations (BGE-M3 format, bundled defaults), long-context methods,
and the runtimes that run them (torch; ONNX Runtime for the query path)."""
from .base import EncoderSpec, TextEncoder
from .encoder import Encoder
from .loader import ALIASES, DEFAULT_MODEL, load_encoder, resolve_model_dir
from .longctx import LongContext

__all__ = ["Encoder", "EncoderSpec", "TextEncoder", "LongContext", "load_encoder", "resolve_model_dir", "ALIASES",
           "DEFAULT_MODEL"]
