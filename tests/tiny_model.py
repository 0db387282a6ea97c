"""Build tiny random checkpoints in the BGE-M3 format (XLM-RoBERTa + two head files) inside a test.

The tokenizer is a SentencePiece-style Unigram model trained on the fly with `tokenizers`, with
XLM-R's special tokens at XLM-R's ids (<s>=0, <pad>=1, </s>=2, <unk>=3), so the folder loads with
AutoTokenizer/AutoModel exactly like a real BGE-M3 download.
"""
from __future__ import annotations

import json
from pathlib import Path

CORPUS = [
    "The dog runs in the park.", "Der Hund läuft im Park.", "Le chien court dans le parc.",
    "Cats sleep most of the day.", "Quantum computers use qubits.", "Paris is the capital of France.",
    "Berlin ist die Hauptstadt von Deutschland.", "Water boils at one hundred degrees Celsius.",
    "The mitochondria is the powerhouse of the cell.", "Retrieval augmented generation needs search.",
    "Sparse lexical weights and dense vectors complement each other.", "Late interaction scores tokens.",
] * 20


def build_tiny_bgem3(folder: Path, seed: int = 0, hidden: int = 32, layers: int = 2, max_positions: int = 128,
                     colbert_dim: int | None = None, heads: bool = True) -> Path:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = _tiny_tokenizer(folder, max_positions - 2)
    torch.manual_seed(seed)
    config = XLMRobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                              num_attention_heads=2, intermediate_size=2 * hidden,
                              max_position_embeddings=max_positions, pad_token_id=1, bos_token_id=0,
                              eos_token_id=2, type_vocab_size=1)
    XLMRobertaModel(config).save_pretrained(str(folder))
    if heads:
        torch.save(torch.nn.Linear(hidden, colbert_dim or hidden).state_dict(), folder / "colbert_linear.pt")
        sparse = torch.nn.Linear(hidden, 1)
        with torch.no_grad():  # a positive bias keeps most random token weights > 0, so the test bites
            sparse.bias.fill_(0.5)
        torch.save(sparse.state_dict(), folder / "sparse_linear.pt")
    return folder


def _tiny_tokenizer(folder: Path, model_max_length: int):
    """The tiny XLM-R-style tokenizer of `build_tiny_bgem3`, saved in `folder`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=specials + ["<mask>"], unk_token="<unk>")
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    assert [tok.token_to_id(s) for s in specials] == [0, 1, 2, 3]
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "XLMRobertaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
        "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
        "model_max_length": model_max_length}))
    return tok


def build_tiny_modernbert(folder: Path, seed: int = 0, hidden: int = 32, layers: int = 2, max_positions: int = 64,
                          global_every: int = 1, local_attention: int = 16) -> Path:
    """A tiny random ModernBERT (rotary positions, window `max_positions`) with BGE-M3 head files.

    global_every=1 makes every layer global; 2 alternates global and local (sliding-window) layers.
    """
    import torch
    from transformers import ModernBertConfig, ModernBertModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = _tiny_tokenizer(folder, max_positions)
    torch.manual_seed(seed)
    config = ModernBertConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                              num_attention_heads=2, intermediate_size=2 * hidden,
                              max_position_embeddings=max_positions, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                              cls_token_id=0, sep_token_id=2, global_attn_every_n_layers=global_every,
                              local_attention=local_attention, global_rope_theta=10000.0)
    ModernBertModel(config).save_pretrained(str(folder))
    torch.save(torch.nn.Linear(hidden, hidden).state_dict(), folder / "colbert_linear.pt")
    sparse = torch.nn.Linear(hidden, 1)
    with torch.no_grad():
        sparse.bias.fill_(0.5)
    torch.save(sparse.state_dict(), folder / "sparse_linear.pt")
    return folder
