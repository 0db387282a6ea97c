"""Validation sets the shipped heads never saw: held-out Debian title -> body pairs, in BEIR layout.

    python scripts/debian_heldout.py --pairs ~/.cache/hsearch/train/debian/corpus.jsonl --out heldout
    python benchmarks/sweep_sparse_weight.py --datasets heldout/en,heldout/de,...   (chooses fusion.json)

The training run samples `--limit` pairs with `--seed` exactly as `hsearch train` does; every pair of
that sample is left out, and so is every translation of a description whose English original (its
Description-md5) is in it. Per language: the first 200 pairs of a seeded shuffle are the queries (short
description -> long description), 2,000 held-out long descriptions the corpus. `de-en` asks German short
descriptions against English long descriptions (the same package), the cross-lingual case; `--cross fr,ja,ru,zh`
adds the same for other languages (fr-en, ...), each shuffled by its own seed.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hsearch.train.data import title_pairs  # noqa: E402


def write(folder: Path, queries: list, docs: list, pool: dict, target) -> None:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(p.doc for p in docs))  # a package listed twice is one document
    doc_id = lambda key: key.split("/", 1)[1]  # noqa: E731 -- "pairs:corpus.jsonl/en/0ad" -> "en/0ad"
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        for key in keys:
            f.write(json.dumps({"_id": doc_id(key), "title": "", "text": pool[key]}, ensure_ascii=False) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as f:
        for i, p in enumerate(queries):
            f.write(json.dumps({"_id": f"q{i}", "text": p.query}, ensure_ascii=False) + "\n")
    with open(folder / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\t{doc_id(target(p))}\t1\n" for i, p in enumerate(queries)))
    print(f"{folder}: {len(queries)} queries, {len(keys)} documents", file=sys.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", required=True, help="the corpus.jsonl of scripts/debian_descriptions.py")
    ap.add_argument("--out", required=True)
    ap.add_argument("--limit", type=int, default=24000, help="the training run's --limit (model card)")
    ap.add_argument("--seed", type=int, default=0, help="the training run's --seed")
    ap.add_argument("--langs", default="en,de,fr,ja,ru,zh")
    ap.add_argument("--cross", default="", help="also X-en sets for these languages besides de-en (e.g. fr,ja,ru,zh), "
                    "each drawn with its own seed, so adding one changes no other set")
    a = ap.parse_args(argv)
    source, pairs, pool = title_pairs(a.pairs)
    train = random.Random(a.seed).sample(pairs, a.limit) if len(pairs) > a.limit else pairs  # as load_training_data
    meta = {}
    for line in open(a.pairs, encoding="utf-8"):
        d = json.loads(line)
        meta[f"{source}/{d['_id']}"] = (d["lang"], d["md5"])
    seen = {meta[p.doc][1] for p in train}
    by_lang: dict[str, list] = {}
    for p in pairs:
        if meta[p.doc][1] not in seen:
            by_lang.setdefault(meta[p.doc][0], []).append(p)
    print(f"{len(pairs)} pairs, {sum(map(len, by_lang.values()))} held out", file=sys.stderr)
    rng, out = random.Random(1), Path(a.out)
    for lang in a.langs.split(","):
        held = sorted(by_lang.get(lang, []), key=lambda p: p.doc)
        rng.shuffle(held)
        write(out / lang, held[:200], held[:2000], pool, lambda p: p.doc)
    english = {meta[p.doc][1]: p for p in by_lang.get("en", [])}
    german = sorted((p for p in by_lang.get("de", []) if meta[p.doc][1] in english), key=lambda p: p.doc)
    cross(out / "de-en", german, english, by_lang, meta, pool, rng)
    for lang in filter(None, a.cross.split(",")):
        if lang != "de":
            foreign = sorted((p for p in by_lang.get(lang, []) if meta[p.doc][1] in english), key=lambda p: p.doc)
            cross(out / f"{lang}-en", foreign, english, by_lang, meta, pool, random.Random(f"{lang}-en"))


def cross(folder: Path, foreign: list, english: dict, by_lang: dict, meta: dict, pool: dict, rng) -> None:
    """Short descriptions in one language asked against English long descriptions (the same package's)."""
    rng.shuffle(foreign)
    queries = foreign[:200]
    answers = [english[meta[p.doc][1]] for p in queries]
    rest = sorted((p for p in by_lang.get("en", []) if p.doc not in {d.doc for d in answers}), key=lambda p: p.doc)
    rng.shuffle(rest)
    write(folder, queries, answers + rest[:2000 - len(answers)], pool, lambda p: english[meta[p.doc][1]].doc)


if __name__ == "__main__":
    main()
