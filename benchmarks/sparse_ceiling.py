"""Diagnostic: how far lexical matching on the encoder's own tokens can go, with corpus statistics.

    python benchmarks/sparse_ceiling.py --datasets ../shared/datasets/scifact,... --memo MEMO
    python benchmarks/sparse_ceiling.py --model TINY_FOLDER --datasets BEIR --out OUT   # the tests' small variant

Replaces the sparse head's weights, for this run only, by BM25's (k1 1.2, b 0.75, IDF over the
evaluated corpus, query weight 1 per distinct token) over the same XLM-R pieces the sparse signal
matches on, then scores `sparse` with bench_heads.py (same memo, same engine). A learned head has no
corpus statistics; this is what a classic term weighting reaches on the same tokens, so it bounds what
re-weighting the tokens alone (a sparse head on a frozen backbone) can be expected to give. It is not a
product path: the shipped BM25 signal is tantivy's, over stemmed words.
"""
from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_heads  # noqa: E402

from hsearch.encode.base import prefix_length  # noqa: E402
from hsearch.encode.encoder import Encoder  # noqa: E402
from hsearch.encode import load_encoder  # noqa: E402

K1, B = 1.2, 0.75
STATS: dict = {}
QUERY = {"now": False}


def corpus_stats(tokenizer, corpus: Path, prefix: str) -> None:
    df, lengths = Counter(), []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            text = f"{d['title']}\n{d['text']}" if d.get("title") else d["text"]
            ids = tokenizer(prefix + text, truncation=True, max_length=512)["input_ids"]
            df.update(set(ids))
            lengths.append(len(ids))
    n = len(lengths)
    STATS.update(n=n, avg=sum(lengths) / n, idf={t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()})


def bm25_weights(ids: np.ndarray, specials: np.ndarray) -> dict[int, float]:
    ids = [int(t) for t in ids[~np.isin(ids, specials)]]
    tf = Counter(ids)
    if QUERY["now"]:
        return {t: 1.0 for t in tf}
    norm = K1 * (1 - B + B * len(ids) / STATS["avg"])
    return {t: STATS["idf"].get(t, 0.0) * c * (K1 + 1) / (c + norm) for t, c in tf.items()}


def main(argv=None):
    args = list(argv if argv is not None else sys.argv[1:])
    model = "e5-small"  # --model (any encoder folder) is taken here; every other option goes to bench_heads.py
    if "--model" in args:
        i = args.index("--model")
        model = args.pop(i + 1)
        args.pop(i)
    enc = load_encoder(model)
    real_encode, real_batch, real_load = Encoder.encode, Encoder._encode_batch, bench_heads.load_beir

    def encode(self, texts, *, is_query=False, **kw):
        QUERY["now"] = is_query
        return real_encode(self, texts, is_query=is_query, **kw)

    def encode_batch(self, batch_ids, *a):
        # leave the prefix out exactly as the encoder does, then weigh the rest by BM25
        skip = [prefix_length(x, self._prefixes) for x in batch_ids]
        out = real_batch(self, batch_ids, *a)
        specials = np.asarray(self._special_ids, dtype=np.int64)
        for enc_, ids, s in zip(out, batch_ids, skip):
            if enc_.sparse is not None:
                ids = np.asarray(ids, dtype=np.int64)
                enc_.sparse = bm25_weights(np.concatenate([ids[:1], ids[1 + s:]]), specials)
        return out

    def load_beir(folder, *a, **k):
        data = real_load(folder, *a, **k)
        corpus_stats(enc.tokenizer, data.corpus, enc.spec.document_prefix)
        return data

    Encoder.encode, Encoder._encode_batch, bench_heads.load_beir = encode, encode_batch, load_beir
    bench_heads.main(["--variants", f"bm25-on-pieces={model}", "--modes", "sparse", *args])


if __name__ == "__main__":
    main()
