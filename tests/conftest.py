import pytest

from tiny_model import build_tiny_bgem3


@pytest.fixture(scope="session")
def tiny_bgem3(tmp_path_factory):
    """A tiny random BGE-M3-format checkpoint folder (XLM-R + sparse_linear.pt + colbert_linear.pt)."""
    return build_tiny_bgem3(tmp_path_factory.mktemp("tiny-bgem3"))
