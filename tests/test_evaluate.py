"""Evaluation: BEIR loading, ir-measures scoring, the `eval` CLI, weight sweeps, synthetic LongEmbed tasks."""
import json

import ir_measures
import pytest
from click.testing import CliRunner

from hsearch.cli import main
from hsearch.errors import InputError
from hsearch.evaluate.beir import MEASURES, as_run, evaluate, load_beir, score, weight_grid
from hsearch.evaluate.synthetic import generate, run_synthetic, write_beir
from hsearch.types import Hit

DOCS = {
    "volcano": "Volcanoes erupt molten lava and ash from deep underground.",
    "penguin": "Penguins are flightless birds that swim in cold Antarctic water.",
    "violin": "A violin has four strings and is played with a bow.",
    "bread": "Sourdough bread rises slowly because of wild yeast.",
    "glacier": "Glaciers carve valleys as the ice creeps downhill.",
    "comet": "A comet grows a bright tail when it nears the sun.",
    "cactus": "Cactus plants store water in thick spiny stems.",
    "tide": "Ocean tides follow the pull of the moon.",
    "chess": "In chess the knight moves in an L shape.",
    "honey": "Bees make honey from flower nectar.",
}
QUERIES = {"q1": "volcanoes lava", "q2": "penguins flightless birds", "q3": "violin strings bow",
           "q4": "sourdough yeast bread", "q5": "glaciers ice valleys", "q6": "comet tail", "q7": "chess knight"}
TEST = {"q1": "volcano", "q2": "penguin", "q3": "violin", "q4": "bread", "q5": "glacier"}
DEV = {"q6": "comet", "q7": "chess"}


@pytest.fixture()
def beir(tmp_path):
    root = tmp_path / "tiny-beir"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n"
                                               for k, v in DOCS.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in QUERIES.items()))
    for split, qrels in (("test", TEST), ("dev", DEV)):
        (root / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels.items()))
    return root


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HSEARCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_score_is_ir_measures_on_a_hand_checkable_run():
    hits = [Hit(id="other", score=1.0), Hit(id="rel", score=1.0)]  # a tie: our order must still hold
    run = as_run({"q": hits})
    got = score(run, {"q": {"rel": 1}})
    assert got["MRR@10"] == 0.5 and got["Recall@100"] == 1.0
    assert got["nDCG@10"] == pytest.approx(1 / __import__("math").log2(3))
    expected = ir_measures.calc_aggregate(list(MEASURES.values()), {"q": {"rel": 1}}, run)
    assert got == {name: expected[m] for name, m in MEASURES.items()}
    # a query with qrels but no hits counts as 0, not as absent
    assert score({"q": run["q"]}, {"q": {"rel": 1}, "empty": {"x": 1}})["MRR@10"] == 0.25


def test_score_exact_values_on_graded_qrels():
    """nDCG@10, MRR@10, Recall@100 worked out by hand (trec_eval's gains: the grade itself, discount
    log2(rank + 1)), on three queries: graded judgments out of order, a perfect one, one with no hits."""
    from math import log2

    qrels = {"q1": {"a": 2, "b": 1}, "q2": {"c": 1}, "q3": {"d": 1}}
    run = as_run({"q1": [Hit(id="b", score=3.0), Hit(id="x", score=2.0), Hit(id="a", score=1.0)],
                  "q2": [Hit(id="c", score=0.5), Hit(id="y", score=0.1)]})
    got = score(run, qrels)
    q1 = (1 / log2(2) + 2 / log2(4)) / (2 / log2(2) + 1 / log2(3))  # = 2 / 2.6309 = 0.76019
    assert got["nDCG@10"] == pytest.approx((q1 + 1.0 + 0.0) / 3) and got["nDCG@10"] == pytest.approx(0.586729, abs=1e-6)
    assert got["MRR@10"] == pytest.approx(2 / 3) and got["Recall@100"] == pytest.approx(2 / 3)
    # the ideal order scores 1 on q1; the one relevant hit at rank 11 counts for recall only
    ideal = as_run({"q1": [Hit(id="a", score=1.0), Hit(id="b", score=1.0)]})
    assert score(ideal, {"q1": qrels["q1"]})["nDCG@10"] == pytest.approx(1.0)
    late = as_run({"q1": [Hit(id=f"n{i}", score=0.0) for i in range(10)] + [Hit(id="a", score=0.0)]})
    assert score(late, {"q1": qrels["q1"]}) == {"nDCG@10": 0.0, "Recall@100": 0.5, "MRR@10": 0.0}


def test_load_beir_keeps_queries_with_qrels_sorted_and_limited(beir):
    data = load_beir(beir, "test", limit_queries=3)
    assert list(data.queries) == ["q1", "q2", "q3"] and set(data.qrels) == {"q1", "q2", "q3"}
    assert list(load_beir(beir, "dev").queries) == ["q6", "q7"]


def test_evaluate_bm25_is_perfect_and_collection_is_reused(beir, tiny_bgem3, cache):
    modes = ["bm25", "dense", "dense+sparse+bm25"]
    first = evaluate(beir, modes, model=str(tiny_bgem3))
    assert list(first) == modes and all(set(r) == set(MEASURES) for r in first.values())
    assert first["bm25"] == {"nDCG@10": 1.0, "Recall@100": 1.0, "MRR@10": 1.0}
    assert all(0.0 <= v <= 1.0 for r in first.values() for v in r.values())
    again = evaluate(beir, modes, model=str(tiny_bgem3))
    assert again == first and len(list((cache / "eval").iterdir())) == 1


def test_evaluate_reuses_a_user_built_collection_with_its_own_settings(beir, tiny_bgem3, tmp_path):
    from hsearch import open_collection
    from hsearch.config import CollectionConfig

    folder = tmp_path / "f32"
    col = open_collection(folder, create=True, model=str(tiny_bgem3), config=CollectionConfig(colbert_codec="float32"))
    col.index(beir / "corpus.jsonl")
    generation = col.info()["generation"]
    out = evaluate(beir, ["colbert", "bm25"], collection_dir=folder)  # no model, no config: the collection's
    assert out["bm25"]["nDCG@10"] == 1.0 and 0.0 <= out["colbert"]["nDCG@10"] <= 1.0
    reopened = open_collection(folder)
    assert reopened.config.colbert_codec == "float32" and reopened.info()["generation"] == generation


def test_cli_json_shape_and_table(beir, tiny_bgem3):
    r = CliRunner().invoke(main, ["eval", str(beir), "--mode", "bm25,dense+sparse", "--model", str(tiny_bgem3),
                                  "--json", "--limit-queries", "4"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert list(out) == ["bm25", "dense+sparse"]
    assert all(set(v) == {"nDCG@10", "Recall@100", "MRR@10"} and isinstance(v["MRR@10"], float) for v in out.values())
    r = CliRunner().invoke(main, ["eval", str(beir), "--mode", "bm25", "--model", str(tiny_bgem3)])
    assert r.exit_code == 0 and "nDCG@10" in r.output and "1.0000" in r.output
    r = CliRunner().invoke(main, ["eval", str(beir), "--mode", "dense+bm25", "--model", str(tiny_bgem3),
                                  "--sweep-weights"])
    assert r.exit_code == 0 and "dense+bm25: weights dense=" in r.output and "on dev" in r.output


@pytest.mark.parametrize("args,message", [
    (["--split", "validation"], "available splits: dev, test"),
    (["--mode", "dnse"], "unknown mode 'dnse'"),
    (["--sweep-weights", "--sweep-split", "test"], "refusing to sweep weights on the evaluation split"),
    (["--limit-queries", "0"], "at least 1"),
])
def test_cli_bad_inputs_fail_before_indexing(beir, tiny_bgem3, cache, args, message):
    r = CliRunner().invoke(main, ["eval", str(beir), "--model", str(tiny_bgem3)] + args)
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output
    assert not (cache / "eval").exists()


def test_missing_files_and_dataset(tmp_path, beir):
    (beir / "queries.jsonl").unlink()
    with pytest.raises(InputError, match="no queries.jsonl"):
        load_beir(beir)
    r = CliRunner().invoke(main, ["eval"])
    assert r.exit_code != 0 and "give a DATASET" in r.output


def test_sweep_weights_on_dev_then_scores_test(beir, tiny_bgem3):
    out = evaluate(beir, ["bm25", "dense+bm25"], model=str(tiny_bgem3), sweep=True)
    assert "weights" not in out["bm25"]  # one signal: nothing to tune
    swept = out["dense+bm25"]
    assert swept["sweep"]["split"] == "dev" and swept["sweep"]["points"] == len(weight_grid(["dense", "bm25"]))
    assert set(swept["weights"]) == {"dense", "bm25"} and sum(swept["weights"].values()) == pytest.approx(1)
    # one chunk per document and every document a candidate: re-fusing in numpy is exact here
    exact = evaluate(beir, ["dense+bm25"], model=str(tiny_bgem3), split="dev", weights=swept["weights"])
    assert exact["dense+bm25"]["nDCG@10"] == pytest.approx(swept["sweep"]["nDCG@10"])
    with pytest.raises(InputError, match="evaluation split"):
        evaluate(beir, ["dense+bm25"], model=str(tiny_bgem3), split="dev", sweep=True, sweep_split="dev")
    with pytest.raises(InputError, match="no dev or train qrels besides 'dev'"):
        evaluate(beir, ["dense+bm25"], model=str(tiny_bgem3), split="dev", sweep=True)


def test_weight_grid_is_normalised_and_unique():
    grid = weight_grid(["dense", "sparse"])
    assert all(sum(w.values()) == pytest.approx(1) for w in grid)
    assert len({tuple(w.values()) for w in grid}) == len(grid) and {"dense": 0.5, "sparse": 0.5} in grid


@pytest.mark.parametrize("task", ["passkey", "needle"])
def test_synthetic_is_deterministic_capped_and_has_one_answer(task):
    a, b = generate(task, 256, seed=3), generate(task, 256, seed=3)
    assert a == b and a != generate(task, 256, seed=4)
    assert len(a.corpus) == 100 and len(a.queries) == 50
    assert len({d["text"] for d in a.corpus}) == 100
    for length in (64, 256, 1000):
        t = generate(task, length)
        assert all(len(d["text"].split()) <= int(0.75 * length) for d in t.corpus)
        assert max(len(d["text"].split()) for d in t.corpus) > 0.6 * length  # filled, not just capped
    texts = {d["_id"]: d["text"] for d in a.corpus}
    for q, rel in a.qrels.items():
        assert len(rel) == 1
        doc = next(iter(rel))
        assert a.answers[q] in texts[doc]
        assert sum(a.answers[q] in t for t in texts.values()) == 1  # the key tells the one document apart
    if task == "passkey":
        assert all(t.startswith("what is the passkey for ") for t in a.queries.values())


def test_write_beir_round_trip(tmp_path):
    task = generate("needle", 128, seed=1)
    data = load_beir(write_beir(task, tmp_path / "needle"))
    assert data.queries == task.queries and data.qrels == task.qrels
    rows = [json.loads(line) for line in (tmp_path / "needle" / "corpus.jsonl").read_text().splitlines()]
    assert rows == task.corpus


def test_run_synthetic_and_cli_shape(tiny_bgem3, tmp_path):
    out = run_synthetic("passkey", [64], ["bm25"], model=str(tiny_bgem3))
    assert out == {"bm25": {"Acc@1": 1.0, "by_length": {"64": 1.0}}}  # the name's words give the doc away
    r = CliRunner().invoke(main, ["eval", "--synthetic", "needle", "--lengths", "64,96", "--mode", "bm25,dense",
                                  "--model", str(tiny_bgem3), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert list(res) == ["bm25", "dense"] and set(res["dense"]) == {"Acc@1", "by_length"}
    assert list(res["dense"]["by_length"]) == ["64", "96"]
    r = CliRunner().invoke(main, ["eval", "--synthetic", "passkey", "--lengths", "64", "--write-beir",
                                  str(tmp_path / "out")])
    assert r.exit_code == 0 and load_beir(tmp_path / "out" / "passkey-64").queries


def test_collection_from_before_a_new_setting_still_opens_and_keeps_its_cache(beir, tiny_bgem3, cache):
    """A setting added to CollectionConfig later (with a behaviour-keeping default) must not orphan
    collections built before it: the manifest lacks the key, its default holds."""
    import json

    from hsearch.storage.manifest import MANIFEST

    first = evaluate(beir, ["bm25"], model=str(tiny_bgem3))
    (folder,) = list((cache / "eval").iterdir())
    data = json.loads((folder / MANIFEST).read_text())
    del data["config"]["max_chunks"]  # as if the collection predated this setting
    (folder / MANIFEST).write_text(json.dumps(data))
    assert evaluate(beir, ["bm25"], model=str(tiny_bgem3)) == first
    assert list((cache / "eval").iterdir()) == [folder]


def test_weight_sweep_is_exact_for_documents_of_several_chunks(tmp_path, tiny_bgem3):
    """`grid_ndcg` over `chunk_tables` scores every weight point as the engine ranks with those weights, when
    documents are cut into several passages (a document is its best chunk under each point's weights)."""
    import numpy as np

    from hsearch.config import CollectionConfig
    from hsearch.engine import open_collection
    from hsearch.evaluate.beir import chunk_tables, eval_collection, fusion_columns, grid_ndcg

    root = tmp_path / "long-beir"
    (root / "qrels").mkdir(parents=True)
    texts = list(DOCS.values())  # each document: its own text among two others (tied chunks), and words of its own
    docs = {n: " ".join([texts[(i + 3) % len(texts)], f"{n} notes {i}", DOCS[n], f"more on {n} {i}", texts[(i + 7) % len(texts)]])
            for i, n in enumerate(DOCS)}
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in docs.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in QUERIES.items()))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in TEST.items()))
    data = load_beir(root, "test")
    built = eval_collection(data.corpus, str(tiny_bgem3), CollectionConfig(chunk_tokens=16, chunk_overlap=0),
                            collection_dir=tmp_path / "col")
    col = open_collection(built.folder)
    assert col.info()["chunks"] > 2 * len(docs)  # several passages per document
    for normalize in ("none", "minmax"):
        signals, tables = chunk_tables(col, data.queries, "dense+sparse+bm25", normalize=normalize)
        cols = {q: fusion_columns(m, "weighted", normalize) for q, (m, _d) in tables.items()}
        points = weight_grid(signals)[::7]  # zero weights (many ties) among them
        fast = grid_ndcg(cols, {q: d for q, (_m, d) in tables.items()}, data.qrels,
                         np.array([[w[s] for s in signals] for w in points]))
        for w, got in zip(points[:8], fast):
            engine = score(as_run({q: col.search(t, "dense+sparse+bm25", k=10, weights=w, normalize=normalize)
                                   for q, t in data.queries.items()}), data.qrels)["nDCG@10"]
            assert got == pytest.approx(engine, abs=1e-9), (normalize, w)
