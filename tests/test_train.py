"""`hsearch train`: the heads learn a toy task in seconds on a tiny random model, the saved folder is a
BGE-M3-format model that the encoder loads with the trained weights, and a run resumes exactly."""
import json

import numpy as np
import pytest
import torch

from hsearch.encode import load_encoder
from hsearch.errors import InputError
from hsearch.query.scoring import colbert_score, sparse_score
from hsearch.train import TrainConfig, train
from hsearch.train.data import title_pairs

def _single_token_words(model):
    """Words the tiny tokenizer keeps as one piece: keys and filler then never share a token."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    words = [p[1:] for p in tok.get_vocab() if p.startswith("\u2581") and p[1:].isalpha()]
    return sorted(w for w in words if len(tok(w, add_special_tokens=False)["input_ids"]) == 1)


def _write_beir(folder, model, n_train=80, n_dev=30, seed=0):
    """Each document: 3 key words among a lot of filler; its query: the keys and more filler, so bag-of-
    tokens overlap is fooled by the filler and a trained sparse head learns to weigh the keys."""
    words = _single_token_words(model)
    assert len(words) >= 12
    keys, filler = words[::2], words[1::2]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    (folder / "qrels").mkdir()
    corpus, queries = [], []
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = ["query-id\tcorpus-id\tscore"]
        for i in range(n):
            key = list(rng.choice(keys, 3, replace=False))
            doc = list(rng.choice(filler, 12)) + key
            rng.shuffle(doc)
            query = list(rng.choice(filler, 6)) + key
            rng.shuffle(query)
            corpus.append({"_id": f"{split}{i}", "title": "", "text": " ".join(doc)})
            queries.append({"_id": f"q{split}{i}", "text": " ".join(query)})
            rows.append(f"q{split}{i}\t{split}{i}\t1")
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    return folder


def _accuracy(encoder, folder, split="dev"):
    """Acc@1 of sparse-only and colbert-only scoring over the split's documents, with the stores' exact scores."""
    qrels = [line.split("\t") for line in (folder / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]]
    docs = {d["_id"]: d["text"] for d in map(json.loads, (folder / "corpus.jsonl").read_text().splitlines())}
    queries = {q["_id"]: q["text"] for q in map(json.loads, (folder / "queries.jsonl").read_text().splitlines())}
    ids = [d for _q, d, _r in qrels]
    denc = encoder.encode_documents([docs[d] for d in ids])
    qenc = encoder.encode_queries([queries[q] for q, _d, _r in qrels])
    acc = {}
    for signal, fn in (("sparse", sparse_score), ("colbert", colbert_score)):
        hits = [int(np.argmax([fn(getattr(q, signal), getattr(d, signal)) for d in denc]) == i)
                for i, q in enumerate(qenc)]
        acc[signal] = float(np.mean(hits))
    return acc


@pytest.fixture(scope="module")
def toy(tmp_path_factory, tiny_bgem3):
    return _write_beir(tmp_path_factory.mktemp("toy") / "toy", tiny_bgem3)


def test_heads_learn_the_toy_task_and_load_back(tmp_path, tiny_bgem3, toy):
    out = tmp_path / "trained"
    card = train(str(tiny_bgem3), out, TrainConfig(fresh=True, epochs=30, max_batch=16, lr=3e-3, checkpoint_every=50),
                 beir=[f"{toy}:train"])
    assert card["pairs"] == 80 and card["data"] == {"toy:train": 80}
    first, last = card["loss_first_last"]
    assert last["nce_sparse"] < 0.6 * first["nce_sparse"] and last["nce_colbert"] < 0.6 * first["nce_colbert"]
    trained = load_encoder(str(out))
    assert trained.spec.sparse_head == "trained" and trained.spec.name.endswith("+heads")
    # what the encoder loaded is what was trained (BGE-M3 files, read back with weights_only=True)
    saved = torch.load(out / "sparse_linear.pt", weights_only=True)
    assert torch.equal(trained.sparse_linear.weight, saved["weight"])
    # the untrained starting point: unit sparse weights (bag of tokens) and identity token vectors
    start = tmp_path / "start"
    train(str(tiny_bgem3), start, TrainConfig(fresh=True), beir=[f"{toy}:train"], max_steps=0)
    before, after = _accuracy(load_encoder(str(start)), toy), _accuracy(trained, toy)
    # measured: sparse 0.37 -> 0.87, colbert 0.10 -> 0.60 on the held-out dev split
    assert after["sparse"] >= before["sparse"] + 0.3 and after["colbert"] >= before["colbert"] + 0.3, (before, after)
    assert json.loads((out / "training.json").read_text())["recipe"]["distill"] is True


def test_resume_gives_the_same_heads(tmp_path, tiny_bgem3, toy):
    cfg = TrainConfig(fresh=True, epochs=2, max_batch=8, checkpoint_every=3, colbert_dim=16)
    straight = tmp_path / "straight"
    train(str(tiny_bgem3), straight, cfg, beir=[f"{toy}:train"])
    part = tmp_path / "part"
    train(str(tiny_bgem3), part, cfg, beir=[f"{toy}:train"], max_steps=6)  # "killed" after a checkpoint
    resumed = tmp_path / "resumed"
    (tmp_path / "part.work").rename(tmp_path / "resumed.work")
    card = train(str(tiny_bgem3), resumed, cfg, beir=[f"{toy}:train"])
    assert card["steps"] == json.loads((straight / "training.json").read_text())["steps"] > 6
    for name in ("sparse_linear.pt", "colbert_linear.pt"):
        a, b = (torch.load(f / name, weights_only=True) for f in (straight, resumed))
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), name
    assert torch.load(resumed / "colbert_linear.pt", weights_only=True)["weight"].shape == (16, 32)


def test_distillation_off_trains_each_head_alone(tmp_path, tiny_bgem3, toy):
    card = train(str(tiny_bgem3), tmp_path / "alone", TrainConfig(fresh=True, distill=False, max_batch=16),
                 beir=[f"{toy}:train"], max_steps=3)
    assert set(card["loss_first_last"][1]) == {"step", "loss", "nce_sparse", "nce_colbert"}
    card = train(str(tiny_bgem3), tmp_path / "distilled", TrainConfig(fresh=True, max_batch=16), beir=[f"{toy}:train"],
                 max_steps=3)
    assert {"nce_teacher", "kd_sparse", "kd_colbert"} <= set(card["loss_first_last"][1])


def test_unsupervised_title_pairs(tmp_path):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text(json.dumps({"_id": "x", "title": "Dogs", "text": "The dog runs in the park " * 3})
                                    + "\n" + json.dumps({"_id": "y", "title": "Short", "text": "too short"}) + "\n")
    (corpus / "b.md").write_text("Quantum computers and qubits\nQuantum computers use qubits to compute things.\n")
    source, pairs, pool = title_pairs(str(corpus))
    assert sorted(p.query for p in pairs) == ["Dogs", "Quantum computers and qubits"]
    assert all(pool[p.doc] for p in pairs) and source == "pairs:docs"


def test_errors(tmp_path, tiny_bgem3, toy):
    with pytest.raises(InputError, match="test split"):
        train(str(tiny_bgem3), tmp_path / "o", beir=[f"{toy}:test"])
    with pytest.raises(InputError, match="no training data"):
        train(str(tiny_bgem3), tmp_path / "o")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        train(str(tiny_bgem3), tmp_path / "full", beir=[f"{toy}:train"])


def test_cli_train(tmp_path, tiny_bgem3, toy):
    from click.testing import CliRunner

    from hsearch.cli import main

    out = tmp_path / "cli"
    r = CliRunner().invoke(main, ["train", "--model", str(tiny_bgem3), "--out", str(out), "--beir", f"{toy}:train",
                                  "--colbert-dim", "8", "--max-steps", "2", "--limit", "50", "--fresh-heads", "-q"])
    assert r.exit_code == 0, r.output
    assert "50 pairs from toy:train; 2 steps" in r.output
    assert load_encoder(str(out)).colbert_dim == 8
    card = json.loads((out / "training.json").read_text())
    assert card["command"] == (f"hsearch train --model {tiny_bgem3} --beir {toy}:train --colbert-dim 8 --limit 50 "
                               f"--fresh-heads --out {out}")  # the model card's command reproduces the run
    r = CliRunner().invoke(main, ["train", "--model", str(tiny_bgem3), "--out", str(tmp_path / "x"),
                                  "--beir", f"{toy}:test"])
    assert r.exit_code != 0 and "test split" in r.output and "Traceback" not in r.output


def test_full_fine_tuning_saves_its_own_backbone(tmp_path, tiny_bgem3, toy):
    """--full (meant for a GPU, run here on the tiny model): the transformer learns too, and the saved
    weights are new files, not links that would overwrite the base model."""
    from safetensors.torch import load_file

    base = load_file(tiny_bgem3 / "model.safetensors")
    out = tmp_path / "full"
    train(str(tiny_bgem3), out, TrainConfig(fresh=True, full=True, max_batch=8, backbone_lr=1e-3), beir=[f"{toy}:train"],
          max_steps=3)
    tuned = load_file(out / "model.safetensors")
    assert load_file(tiny_bgem3 / "model.safetensors").keys() == base.keys()
    assert all(torch.equal(base[k], load_file(tiny_bgem3 / "model.safetensors")[k]) for k in base)
    changed = [k for k in base if k in tuned and not torch.equal(base[k], tuned[k])]
    assert changed and (out / "model.safetensors").stat().st_ino != (tiny_bgem3 / "model.safetensors").stat().st_ino
    assert load_encoder(str(out)).spec.sparse_head == "trained"


def test_long_labelled_positives_become_their_best_passage(tmp_path):
    from hsearch.train.data import LONG_DOC_CHARS, Pair, best_passages, passages

    filler = "".join(f"Speaker {i % 3}: we talked about the weather and lunch again today.\n" for i in range(200))
    middle = "Speaker 1: the quarterly budget for the robot arm is approved.\n"
    long_doc = filler + middle + filler
    assert len(long_doc) > LONG_DOC_CHARS
    pool = {"s/long": long_doc, "s/short": "a short document about budgets"}
    pairs = [Pair("robot arm budget", "s/long", "s"), Pair("zebra xylophone", "s/long", "s"),
             Pair("budgets", "s/short", "s")]
    out, new_pool = best_passages(pairs, pool)
    parts = passages(long_doc)
    assert len(parts) > 5 and "".join(p + "\n" for p in parts) == long_doc  # whole lines, nothing lost
    assert "robot arm" in new_pool[out[0].doc] and out[0].doc.startswith("s/long#")
    assert out[1].doc == "s/long#0"  # no query word in the document: its first passage
    assert out[2] == pairs[2] and new_pool["s/short"] == pool["s/short"]
    assert "s/long" not in new_pool


def test_training_goes_on_from_the_models_own_heads(tmp_path, tiny_bgem3, toy):
    """Adapting trained heads to a corpus starts from them; --fresh-heads starts from the untrained behaviour."""
    kept = tmp_path / "kept"
    card = train(str(tiny_bgem3), kept, TrainConfig(), beir=[f"{toy}:train"], max_steps=0)
    assert card["start"].startswith("the trained heads of")
    again = train(str(kept), tmp_path / "again", TrainConfig(), beir=[f"{toy}:train"], max_steps=0)
    assert again["base_fingerprint"] == card["base_fingerprint"] == card["start_fingerprint"]  # one transformer
    assert again["start_fingerprint"] != again["base_fingerprint"]
    for f in ("sparse_linear.pt", "colbert_linear.pt"):
        a, b = torch.load(kept / f, weights_only=True), torch.load(tiny_bgem3 / f, weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a)
    fresh = tmp_path / "fresh"
    assert train(str(tiny_bgem3), fresh, TrainConfig(fresh=True), beir=[f"{toy}:train"], max_steps=0)["start"] == "untrained"
    assert torch.equal(torch.load(fresh / "colbert_linear.pt", weights_only=True)["weight"], torch.eye(32))


def test_saving_never_writes_into_the_base_model(tmp_path, tiny_bgem3, toy):
    """The output hard-links the base model's weights; every file it rewrites must be its own (a write
    through a link once renamed the base model and changed its fingerprint)."""
    import shutil

    from hsearch.encode.loader import _fingerprint

    base = tmp_path / "base"
    shutil.copytree(tiny_bgem3, base)
    (base / "hsearch_model.json").write_text(json.dumps({"pooling": "cls", "source": "test"}))
    before = {f.name: f.read_bytes() for f in base.iterdir()}
    fp = _fingerprint(base)
    out = tmp_path / "out"
    train(str(base), out, TrainConfig(fresh=True), beir=[f"{toy}:train"], max_steps=1)
    assert {f.name: f.read_bytes() for f in base.iterdir()} == before and _fingerprint(base) == fp
    assert json.loads((out / "hsearch_model.json").read_text())["name"].endswith("base+heads")


def test_training_scores_what_the_engine_scores_prefix_left_out(tiny_bgem3):
    """With e5-style prefixes the training's sparse and MaxSim scores equal the engine's scores of the
    encoder's outputs, which leave the prefix tokens out: the heads learn what is used."""
    from dataclasses import replace

    from hsearch.encode import Encoder
    from hsearch.train.heads import Batch, Heads, colbert_scores, colbert_vectors, prefix_mask, sparse_scores, \
        sparse_weights

    base = load_encoder(str(tiny_bgem3), device="cpu")
    spec = replace(base.spec, query_prefix="query: ", document_prefix="passage: ")
    enc = Encoder(base.model, base.tokenizer, spec, base.sparse_linear, base.colbert_linear, device="cpu")
    heads = Heads(base.model.config.hidden_size, base.colbert_dim)
    heads.sparse.load_state_dict(base.sparse_linear.state_dict())
    heads.colbert.load_state_dict(base.colbert_linear.state_dict())
    qs, ds = ["Cats sleep most of the day."], ["The dog runs in the park.", "Cats sleep. Paris is the capital."]

    def batch(texts, prefix):
        ids, _ = enc.tokenize([prefix + t for t in texts], 128)
        hidden, mask, input_ids = enc.hidden_states(ids)
        return Batch(hidden.clone(), input_ids.clone(), mask.clone())

    q, d = batch(qs, spec.query_prefix), batch(ds, spec.document_prefix)
    q_pre, d_pre = prefix_mask(q, enc._prefixes), prefix_mask(d, enc._prefixes)
    assert q_pre.sum() >= 2 and d_pre.sum() >= 2 * 2
    specials = torch.tensor(enc._special_ids)
    with torch.no_grad():
        got_sparse = sparse_scores(q.ids, sparse_weights(heads, q, specials, q_pre),
                                   d.ids, sparse_weights(heads, d, specials, d_pre))
        got_colbert = colbert_scores(*colbert_vectors(heads, q, q_pre), *colbert_vectors(heads, d, d_pre))
    [qe], de = enc.encode_queries(qs), enc.encode_documents(ds)
    for j, dj in enumerate(de):
        assert float(got_sparse[0, j]) == pytest.approx(sparse_score(qe.sparse, dj.sparse), rel=1e-4, abs=1e-6)
        assert float(got_colbert[0, j]) == pytest.approx(colbert_score(qe.colbert, dj.colbert), rel=1e-4)


def test_a_trained_model_gets_fusion_weights_chosen_on_pairs_it_never_saw(tmp_path, tiny_bgem3, toy):
    from hsearch.engine import open_collection
    from hsearch.train.data import load_training_data
    from hsearch.train.fusion_choice import SPARSE_GRID

    data = load_training_data([f"{toy}:train"], limit=50, seed=0)  # 50 trained on, 30 held out
    assert len(data.pairs) == 50 and len(data.held) == 30
    assert not {p.query for p in data.held} & {p.query for p in data.pairs} and not set(data.held_pool) & set(data.pool)
    out = tmp_path / "fused"
    card = train(str(tiny_bgem3), out, TrainConfig(fresh=True, limit=50, max_batch=16), beir=[f"{toy}:train"],
                 max_steps=2)
    fusion = json.loads((out / "fusion.json").read_text())
    assert fusion["weights"]["sparse"] in SPARSE_GRID and set(fusion["weights"]) == {"sparse"}
    minmax = fusion["weights_minmax"]
    assert set(minmax) == {"dense", "sparse", "colbert", "bm25"} and sum(minmax.values()) == pytest.approx(1, abs=1e-5)
    assert fusion["chosen_on"].startswith("30 queries and 30 documents of pairs held out")
    scores = fusion["heldout_ndcg10"]
    assert scores["all+bm25 min-max, chosen"] >= max(scores[f"{s} alone"] for s in minmax)  # the grid's best
    assert scores["dense+sparse raw, sparse weight beside dense 0.4"][str(fusion["weights"]["sparse"])] == \
        max(scores["dense+sparse raw, sparse weight beside dense 0.4"].values())
    assert card["fusion"]["weights_minmax"] == minmax
    assert json.loads((out / "training.json").read_text())["fusion"]["weights"] == fusion["weights"]
    col = open_collection(tmp_path / "col", create=True, model=str(out))  # what a collection of it then uses
    assert col.plan("x", "all+bm25").weights == minmax
    assert col.plan("x", "dense+sparse").weights == {"dense": 0.4, "sparse": fusion["weights"]["sparse"]}

    few = train(str(tiny_bgem3), tmp_path / "few", TrainConfig(fresh=True, max_batch=16), beir=[f"{toy}:train"],
                max_steps=1)  # 80 pairs, no --limit: nothing held out
    assert not (tmp_path / "few" / "fusion.json").exists() and few["fusion"].startswith("not chosen: 0 held-out")


def test_held_out_ties_go_to_the_weights_the_model_started_from():
    from hsearch.train.fusion_choice import _nearest

    points = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    assert _nearest(np.array([1.0, 1.0, 1.0]), points, np.array([0.4, 0.6])) == 1  # held-out data too easy: the prior
    assert _nearest(np.array([0.9, 0.8, 1.0]), points, np.array([1.0, 0.0])) == 2  # a better point beats the prior
    assert _nearest(np.array([1.0, 0.2, 1.0]), points, np.array([0.0, 1.0])) == 2  # among the tied, the nearest
