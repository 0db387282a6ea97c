"""Retrieval quality: BEIR-layout datasets (beir.py) and LongEmbed-style synthetic tasks (synthetic.py)."""
