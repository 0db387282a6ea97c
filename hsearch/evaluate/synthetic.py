"""LongEmbed-style synthetic retrieval tasks, generated deterministically from a seed.

passkey: LongEmbed's filler repeated to the length, one "{Name}'s pass key is {12345}..." sentence at a
         random sentence boundary; query "what is the passkey for {Name}?".
needle:  one fact about a named person hidden in bland prose (our own text below); query asks for it.

Per length: 100 documents (each its own name and key) and 50 queries, one relevant document each.
Lengths are LongEmbed "tokens": a document holds at most 0.75 x length words, as in the paper.

    from hsearch.evaluate.synthetic import run_synthetic
    run_synthetic("passkey", [256, 512], ["dense", "bm25"], model="e5-small")
    # -> {"dense": {"Acc@1": 0.52, "by_length": {"256": 0.6, "512": 0.44}}, "bm25": {...}}
"""
from __future__ import annotations

import json
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hsearch.errors import InputError

TASKS = ("passkey", "needle")
LONGEMBED_LENGTHS = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
WORDS_PER_TOKEN = 0.75
PASSKEY_FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
# Written for this module: generic, uncopyrighted filler for the needle task.
NEEDLE_FILLER = """Most towns wake up slowly. The first buses leave the depot before the sun is fully up, and
the bakeries on the main street switch on their ovens while the pavements are still wet from the night.
People walk to work with their collars turned up, and the cafes fill with the sound of cups and quiet
talk. By mid morning the markets are busy. Traders stack apples, onions and potatoes in neat rows, and
shoppers move from stall to stall comparing prices. The weather decides a great deal. On a dry day the
parks are full of people eating lunch on benches, while on a rainy day everyone crowds into the library
or the shopping arcade. Clouds often gather in the afternoon and clear again by evening. Gardeners watch
the sky closely, because a late frost can undo weeks of careful work. Cooking at home follows the
seasons. In winter many families make thick stews and bake bread, and in summer they prefer salads,
grilled vegetables and cold drinks. A simple soup can be made from whatever is left in the cupboard:
some stock, a few vegetables, a handful of rice and a little salt. Recipes are passed from one
generation to the next, often changing a little each time. In the evening the streets grow quiet again.
Lights come on in the windows of the flats, and the last trains carry tired commuters home. Some people
read, some watch television, and some simply sit by the window and watch the rain. Weekends have a
rhythm of their own. Families visit relatives, friends meet for long breakfasts, and children ride their
bicycles along the river path. The town hall clock strikes every hour, and most people no longer notice
it. Maintenance crews repair the roads in spring, and the council plants new trees along the avenues in
autumn. Nothing much changes from one year to the next, and most residents like it that way."""
FIRST = ("Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas",
         "Kavya", "Lars", "Mira", "Nikolai", "Olga", "Pedro", "Quinn", "Rosa", "Samir", "Tova")
LAST = ("Abbott", "Baker", "Castillo", "Dubois", "Eriksen", "Fischer", "Gallo", "Hayes", "Ibsen", "Jansen")
ADJ = ("smoked", "roasted", "pickled", "dried", "candied", "toasted", "fresh", "wild", "sour", "crushed")
ITEM = ("paprika", "ginger", "fennel", "lemon", "cherry", "walnut", "mint", "garlic", "plum", "sesame")
NEEDLES = (  # (fact, question); one is picked per document
    ("The secret ingredient in {name}'s soup is {item}.", "What is the secret ingredient in {name}'s soup?"),
    ("{name} always keeps a jar of {item} on the kitchen shelf.", "What does {name} keep in a jar on the kitchen shelf?"),
    ("The cake that {name} baked last winter was flavoured with {item}.", "What flavour was the cake {name} baked last winter?"),
)


@dataclass
class SyntheticTask:
    name: str  # passkey | needle
    length: int  # LongEmbed tokens
    corpus: list[dict]  # {"_id", "title", "text"}
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]  # query id -> {its one relevant doc id: 1}
    answers: dict[str, str]  # query id -> the key or item its document holds


def _sentences(text: str) -> list[str]:
    return [s.strip() + "." for s in " ".join(text.split()).split(".") if s.strip()]


def _fill(rng: random.Random, filler: list[str], needle: str, words: int, random_start: bool) -> str:
    """Filler sentences (cycled) up to `words` words in all, `needle` at a random sentence boundary."""
    budget, out, i = words - len(needle.split()), [], rng.randrange(len(filler)) if random_start else 0
    while budget >= len(filler[i % len(filler)].split()):
        out.append(filler[i % len(filler)])
        budget -= len(out[-1].split())
        i += 1
    out.insert(rng.randint(0, len(out)), needle)
    return " ".join(out)


def generate(task: str, length: int, seed: int = 0, n_docs: int = 100, n_queries: int = 50) -> SyntheticTask:
    """One length of `task`; the same (task, length, seed) always gives the same documents and queries."""
    if task not in TASKS:
        raise InputError(f"unknown synthetic task {task!r}; choose from {', '.join(TASKS)}")
    if length < 64:
        raise InputError(f"length {length} is too short for a synthetic task; use at least 64 tokens")
    if not 1 <= n_queries <= n_docs <= len(FIRST) * len(LAST):
        raise InputError(f"need 1 <= n_queries <= n_docs <= {len(FIRST) * len(LAST)}")
    rng = random.Random(f"{task}:{length}:{seed}")  # a str seed is stable across processes and platforms
    words = int(WORDS_PER_TOKEN * length)
    names = [f"{f} {ln}" for f, ln in rng.sample([(f, ln) for f in FIRST for ln in LAST], n_docs)]
    corpus, asks, keys = [], [], []
    if task == "passkey":
        filler = _sentences(PASSKEY_FILLER)
        for i, (name, key) in enumerate(zip(names, rng.sample(range(10000, 100000), n_docs))):
            needle = f"{name}'s pass key is {key}. Remember it. {key} is the pass key for {name}."
            corpus.append({"_id": f"d{i:03d}", "title": "", "text": _fill(rng, filler, needle, words, False)})
            asks.append(f"what is the passkey for {name}?")
            keys.append(str(key))
    else:
        filler = _sentences(NEEDLE_FILLER)
        items = rng.sample([f"{a} {b}" for a in ADJ for b in ITEM], n_docs)
        for i, (name, item) in enumerate(zip(names, items)):
            fact, question = rng.choice(NEEDLES)
            needle = fact.format(name=name, item=item)
            corpus.append({"_id": f"d{i:03d}", "title": "", "text": _fill(rng, filler, needle, words, True)})
            asks.append(question.format(name=name))
            keys.append(item)
    picked = sorted(rng.sample(range(n_docs), n_queries))
    qids = [f"q{j:03d}" for j in range(n_queries)]
    return SyntheticTask(task, length, corpus, {q: asks[i] for q, i in zip(qids, picked)},
                         {q: {f"d{i:03d}": 1} for q, i in zip(qids, picked)},
                         {q: keys[i] for q, i in zip(qids, picked)})


def write_beir(task: SyntheticTask, folder: str | Path) -> Path:
    """Write `task` as a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv); returns the folder."""
    folder = Path(folder).expanduser()
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in task.corpus)
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"_id": q, "text": t}, ensure_ascii=False) + "\n" for q, t in task.queries.items())
    with open(folder / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"{q}\t{d}\t{r}\n" for q, docs in task.qrels.items() for d, r in docs.items())
    return folder


def parse_lengths(text: str) -> list[int]:
    """'256,512' -> [256, 512]."""
    try:
        lengths = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--lengths {text!r}: give comma-separated token counts, e.g. 256,512,1024") from None
    if not lengths:
        raise InputError("--lengths is empty; e.g. 256,512,1024")
    return lengths


def run_synthetic(task: str, lengths, modes: list[str], model: str | None = None, seed: int = 0,
                  config=None, work_dir: str | Path | None = None, progress: bool = False,
                  doc_score: str | None = None, whole_weight: float = 0.5) -> dict[str, dict]:
    """{mode: {"Acc@1": mean over lengths, "by_length": {"256": acc, ...}}}; Acc@1 is ir-measures' nDCG@1.

    Each length is its own collection of 100 documents, built under `work_dir` (default: a temporary
    folder, removed afterwards). Documents longer than the model's window are chunked by the index,
    and a document scores as its best chunk; with a long-context method in `config` it may score as
    its whole-document representation instead (`doc_score`, or a mode's own "@whole").
    """
    from ir_measures import nDCG

    from .beir import as_run, check_modes, eval_collection, load_beir, run_modes, score

    modes = check_modes(modes, doc_score=doc_score, whole_weight=whole_weight)
    lengths = [int(n) for n in lengths]
    for n in lengths:  # fail on a bad length before building any collection
        generate(task, n, seed, n_docs=1, n_queries=1)
    by_length = {m: {} for m in modes}
    with tempfile.TemporaryDirectory(prefix="hsearch-synthetic-") as tmp:
        root = Path(work_dir).expanduser() if work_dir else Path(tmp)
        for n in lengths:
            data = load_beir(write_beir(generate(task, n, seed), root / f"{task}-{n}"))
            col = eval_collection(data.corpus, model, config, root / f"{task}-{n}" / "collection", progress)
            hits = run_modes(col, data.queries, modes, k=1, progress=progress, doc_score=doc_score,
                             whole_weight=whole_weight)
            for m in modes:
                by_length[m][str(n)] = score(as_run(hits[m]), data.qrels, {"Acc@1": nDCG @ 1})["Acc@1"]
    return {m: {"Acc@1": sum(v.values()) / len(v), "by_length": v} for m, v in by_length.items()}
