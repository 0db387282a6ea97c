"""Training the sparse and multi-vector heads (`hsearch train`): BGE-M3's self-knowledge distillation."""
from .loop import TrainConfig, train

__all__ = ["TrainConfig", "train"]
