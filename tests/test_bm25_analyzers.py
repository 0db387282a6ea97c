"""BM25 analyzers (hsearch/index/analyzers.py, hsearch/index/detect.py): the terms each script gets,
a query in each script finding its document through the engine, the choices recorded and enforced,
and collections from before analyzers read as they were.

The pieces are the bundled XLM-R tokenizer's (loaded once, about a second); collections use the fake
encoder, since BM25 needs no vectors."""
import json
import string

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from click.testing import CliRunner

from hsearch import open_collection
from hsearch.cli import main
from hsearch.config import CollectionConfig
from hsearch.errors import CollectionError, InputError
from hsearch.index.analyzers import NAMES, Analyzer, _words
import hsearch.index.bm25 as bm25_module
from hsearch.index.bm25 import ANALYZER_FILE, BM25Index
from hsearch.index.detect import detect, stemmer_for
from hsearch.storage.manifest import Manifest
from hsearch.testing import FakeEncoder

# (document, its word analyzer under auto, its terms, a query in other words or forms, that query's terms)
SCRIPTS = {
    "latin": ("The dogs were running in the park.", "english",
              ["the", "dog", "were", "run", "in", "the", "park"], "a dog runs"),
    "cyrillic": ("Собаки бегали в парке, и это было весело.", "russian",
                 ["собак", "бега", "в", "парк", "и", "эт", "был", "весел"], "собака в парках"),
    "arabic": ("كانت الكلاب تركض في الحديقة.", "arabic", ["كان", "كلاب", "تركض", "في", "حديق"], "الكلاب والحديقة"),
    "greek": ("Τα σκυλιά έτρεχαν στο πάρκο.", "greek", ["τα", "σκυλ", "ετρεχ", "στ", "παρκ"], "σκυλιά πάρκο"),
    "devanagari": ("कुत्ते हर सुबह पार्क में दौड़ते थे।", "words",
                   ["कु", "त्ते", "हर", "सुबह", "पार्क", "में", "दौड़", "ते", "थे"], "पार्क में दौड़"),
    "thai": ("สุนัขวิ่งเล่นในสวนสาธารณะ", "words", ["สุนัข", "วิ่ง", "เล่น", "ใน", "สวน", "สาธารณะ"], "สวนสาธารณะ"),
    "han": ("狗每天早上在公园里跑步。", "words", ["狗", "每天", "早上", "在", "公园", "里", "跑步"], "公园跑步"),
    "kana": ("犬は毎朝公園で走っていました。", "words", ["犬", "は", "毎", "朝", "公園", "で", "走", "っていました"], "毎朝の公園"),
    # no stemmer, no piece script: whole words (the fallback), combining marks kept
    "georgian": ("ძაღლები ყოველ დილით პარკში დარბოდნენ.", "words",
                 ["ძაღლები", "ყოველ", "დილით", "პარკში", "დარბოდნენ"], "პარკში"),
}


@pytest.fixture(scope="module")
def auto():
    return Analyzer("auto")


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_script_gets_its_terms(auto, script):
    text, analyzer, terms, _q = SCRIPTS[script]
    assert auto.choose(text) == analyzer
    assert auto.document(text, analyzer) == terms


def test_piece_runs_inside_other_text_become_pieces(auto):
    text = "Der Begriff 北京大学 bezeichnet die Universität."
    assert auto.choose(text) == "german"
    assert auto.document(text, "german") == ["der", "begriff", "bezeichn", "die", "universitat", "北京", "大学"]


def test_a_query_is_read_by_every_analyzer_the_collection_holds(auto):
    # stemmed and plain forms, each term once (as tantivy's query parser counts a repeated word)
    assert auto.query("running dogs dogs", ["english", "words"]) == {"run", "dog", "running", "dogs"}
    assert auto.query("公园 park", []) == {"公园"}  # no documents yet: only the piece runs


def test_the_english_analyzer_scores_as_tantivys_en_stem(tmp_path):
    """Oracle: on plain English text, the `english` analyzer (terms made here, queries built term by term)
    gives tantivy's own en_stem scores (its tokenizer, its query parser), repeated query words included."""
    import numpy as np

    texts = ["The dogs were running in the park, and the park was wet.", "A dog runs home.", "Cats sleep all day.",
             "Running is what dogs do best; dogs run in parks.", "Parks open at nine."]
    ours, theirs = BM25Index(tmp_path / "ours", "english"), BM25Index(tmp_path / "theirs", "en_stem")
    for index in (ours, theirs):
        index.add(np.arange(len(texts)), texts)
        index.commit()
    for query in ("running dogs dogs in the park?", "Do cats sleep?", "park"):
        (a, sa), (b, sb) = ours.search(query, 10), theirs.search(query, 10)
        assert list(a) == list(b) and list(sa) == pytest.approx(list(sb), rel=1e-5), query


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from([c for c in string.printable if c != "_"]), max_size=200),
       long=st.integers(0, 140), name=st.sampled_from(["words", "english", "german", "turkish"]))
def test_ascii_texts_take_the_faster_tokenizer_with_the_same_terms(text, long, name):
    # the simple tokenizer serves ASCII texts without "_" (analyzers._words); its terms must be \w+'s, long tokens
    # (the 120-byte cut) included
    text = f"{text} {'x' * long} {text.upper()}"
    assert _words(name, True).analyze(text) == _words(name).analyze(text)
    assert Analyzer(name).document(text, name) == _words(name).analyze(text)
    assert Analyzer("words").document(f"{text} snake_case", "words")[-1] == "snake_case"  # "_" keeps \\w+


def test_detection_needs_evidence():
    assert detect("Die Verteidigung der Mannschaft gab nur wenige Punkte ab, und sie wurde Sechste.") == "german"
    assert detect("La defensa del equipo concedió solo unos pocos puntos y fue sexta de la liga.") == "spanish"
    assert detect("Takımın savunması yalnızca birkaç sayı verdi ve ligde altıncı oldu.") == "turkish"
    assert detect("Zorbaq flimmet drang ulvo") == "words"  # no function word of any language: unsure
    assert detect("Цей текст написаний українською мовою і він не російський.") == "words"  # Ukrainian: no stemmer
    assert detect("این یک متن فارسی است که با حروف عربی نوشته شده") == "words"  # Persian letters: not Arabic
    assert detect("1234 5678") == "words"


def test_declared_language_wins_over_detection(auto):
    assert stemmer_for("de") == stemmer_for("de-AT") == stemmer_for("German") == "german"
    assert stemmer_for("pt_BR") == "portuguese"
    assert stemmer_for("pl") == "words"  # a language without a stemmer
    assert stemmer_for(None) is stemmer_for(42) is stemmer_for("not a tag!") is None  # the text decides
    assert auto.choose("The dogs were running in the park.", lang="de") == "german"
    assert auto.choose("The dogs were running in the park.", lang=["en"]) == "english"  # not a tag: detected
    assert Analyzer("pieces").choose("The dogs were running.", lang="de") == "pieces"  # a fixed analyzer is fixed


def _corpus(tmp_path, records):
    folder = tmp_path / "corpus"
    folder.mkdir(exist_ok=True)
    (folder / "docs.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return folder


def _col(tmp_path, name="col", **config):
    return open_collection(tmp_path / name, create=True, encoder=FakeEncoder(dim=16, colbert_dim=16),
                           config=CollectionConfig(**config) if config else None)


def test_a_query_in_each_script_finds_its_document(tmp_path):
    col = _col(tmp_path)
    filler = [{"_id": f"f{i}", "text": t} for i, t in enumerate(
        ["Cats sleep most of the day.", "Кошки спят весь день.", "القطط تنام طوال اليوم.", "Οι γάτες κοιμούνται.",
         "बिल्लियाँ दिन भर सोती हैं।", "แมวนอนทั้งวัน", "猫整天睡觉。", "猫は一日中寝ています。"])]
    col.index(_corpus(tmp_path, [{"_id": s, "text": v[0]} for s, v in SCRIPTS.items()] + filler))
    assert col.config.bm25_analyzer == "auto"
    for script, (_t, _a, _terms, query) in SCRIPTS.items():
        assert col.search(query, mode="bm25", k=3)[0].id == script, query
    counts = col.info()["bm25_analyzers"]
    assert counts["english"] == 2 and counts["greek"] == 2 and counts["words"] >= 8


@pytest.mark.parametrize("term_queries_up_to", [1000, 0])  # the ids as term queries, or as a term set
def test_bm25_scores_candidates_as_its_search_does(tmp_path, monkeypatch, term_queries_up_to):
    monkeypatch.setattr(bm25_module, "_TERM_QUERIES_UP_TO", term_queries_up_to)
    col = _col(tmp_path)
    col.index(_corpus(tmp_path, [{"_id": s, "text": v[0]} for s, v in SCRIPTS.items()]))
    bm25 = col.snapshot().bm25
    every = np.arange(col.snapshot().n_chunks, dtype=np.int64)[::-1]  # in no particular order; most match nothing
    for query in ("dog park", "公园 парке", "दौड़"):
        ids, scores = bm25.search(query, 10)
        assert len(ids) and list(bm25.score(query, ids)) == list(scores)  # the same float32, bit for bit
        got = bm25.score(query, every)
        assert dict(zip(every[got > 0].tolist(), got[got > 0].tolist())) == dict(zip(ids.tolist(), scores.tolist()))
    assert len(bm25.search("!!! ???", 5)[0]) == 0 and list(bm25.score("", [0, 1])) == [0, 0]


def test_documents_declare_their_language(tmp_path):
    col = _col(tmp_path)
    col.index(_corpus(tmp_path, [{"_id": "a", "text": "Die Häuser stehen am Fluss.", "lang": "de"},
                                 {"_id": "b", "text": "Häuser", "lang": "de"},  # too short to detect; declared
                                 {"_id": "c", "text": "Casa grande", "language": "it"}]))
    assert col.info()["bm25_analyzers"] == {"german": 2, "italian": 1}
    assert {h.id for h in col.search("Haus", mode="bm25")} == {"a", "b"}  # both stemmed


def test_a_fixed_analyzer_applies_to_every_document(tmp_path):
    col = _col(tmp_path, bm25_analyzer="german")
    col.index(_corpus(tmp_path, [{"_id": "a", "text": "The houses stand by the river."},
                                 {"_id": "b", "text": "狗在公园里跑步。"}]))
    assert col.info()["bm25_analyzers"] == {"german": 2}
    assert col.search("公园", mode="bm25")[0].id == "b"  # piece-script runs are still pieces


def test_a_document_no_analyzer_knows_is_found_by_its_own_words(tmp_path):
    col = _col(tmp_path)
    col.index(_corpus(tmp_path, [{"_id": "eo", "text": "Zorbaq flimmet drang ulvo", "lang": "tlh"},
                                 {"_id": "am", "text": "ውሾቹ በፓርኩ ውስጥ ይሮጡ ነበር"},  # Ethiopic: no stemmer, no pieces
                                 {"_id": "en", "text": "The dogs were running in the park."}]))
    assert col.search("flimmet", mode="bm25")[0].id == "eo"
    assert col.search("በፓርኩ", mode="bm25")[0].id == "am"
    assert col.info()["bm25_analyzers"]["words"] == 2


def test_unknown_analyzer_is_refused_with_the_list(tmp_path):
    with pytest.raises(InputError, match="unknown BM25 analyzer 'klingon'; choose from auto, words, pieces, en_stem.*german"):
        _col(tmp_path, bm25_analyzer="klingon")
    assert not (tmp_path / "col").exists()
    r = CliRunner().invoke(main, ["index", str(tmp_path), "--collection", str(tmp_path / "c"),
                                  "--bm25-analyzer", "klingon"])
    assert r.exit_code != 0 and "unknown BM25 analyzer 'klingon'" in r.output and "turkish" in r.output
    assert set(NAMES) >= {"auto", "words", "pieces", "en_stem", "english", "turkish", "tamil"}


def test_a_collection_refuses_another_analyzer(tmp_path):
    col = _col(tmp_path, bm25_analyzer="pieces")
    col.index(_corpus(tmp_path, [{"_id": "a", "text": "dogs"}]))
    enc = col.encoder
    with pytest.raises(CollectionError, match="built with BM25 analyzer 'pieces', not 'auto'"):
        open_collection(col.folder, encoder=enc, config=CollectionConfig(bm25_analyzer="auto"))
    again = open_collection(col.folder, encoder=enc, config=CollectionConfig())  # unset: its own
    assert again.config.bm25_analyzer == "pieces"
    # the store checks its own record too: what its terms were made with, and by which definition
    with pytest.raises(CollectionError, match="built with BM25 analyzer 'pieces'"):
        BM25Index(col.folder / "bm25", "words")
    record = json.loads((col.folder / "bm25" / ANALYZER_FILE).read_text())
    (col.folder / "bm25" / ANALYZER_FILE).write_text(json.dumps({**record, "version": 0}))
    with pytest.raises(CollectionError, match=r"\(version 0\)"):
        open_collection(col.folder, encoder=enc).search("dogs", mode="bm25")
    (col.folder / "bm25" / ANALYZER_FILE).write_text(json.dumps({**record, "pieces": "0" * 16}))
    with pytest.raises(CollectionError, match="another XLM-R tokenizer"):
        open_collection(col.folder, encoder=enc).search("dogs", mode="bm25")


def test_collections_from_before_analyzers_read_and_grow_as_before(tmp_path):
    """A manifest from before analyzers says bm25_tokenizer en_stem and no bm25_analyzer; its BM25 folder
    is tantivy's en_stem on one `text` field (the path `en_stem` still takes)."""
    col = _col(tmp_path, bm25_analyzer="en_stem")
    col.index(_corpus(tmp_path, [{"_id": "a", "text": "The dogs were running in the park."},
                                 {"_id": "b", "text": "狗每天早上在公园里跑步。"}]))
    before = [(h.id, h.score) for h in col.search("running dog", mode="bm25")]
    m = Manifest.load(col.folder)
    config = {k: v for k, v in m.config.items() if k != "bm25_analyzer"}
    m.config = {**config, "bm25_tokenizer": "en_stem"}
    m.save(col.folder)
    assert not (col.folder / "bm25" / ANALYZER_FILE).exists()

    old = open_collection(col.folder, encoder=col.encoder)
    assert old.config.bm25_analyzer == "en_stem" and "bm25_analyzers" not in old.info()
    assert [(h.id, h.score) for h in old.search("running dog", mode="bm25")] == before
    assert old.search("公园", mode="bm25") == []  # as before: en_stem reads a CJK sentence as one token
    # `hsearch index` without --bm25-analyzer (config unset) adds to it with en_stem
    grown = open_collection(col.folder, encoder=col.encoder, config=CollectionConfig())
    (tmp_path / "corpus" / "more.jsonl").write_text(json.dumps({"_id": "c", "text": "A dog runs home."}) + "\n")
    grown.index(tmp_path / "corpus")
    assert {h.id for h in grown.search("running dog", mode="bm25")} == {"a", "c"}
    assert Manifest.load(col.folder).config["bm25_analyzer"] == "en_stem"
    with pytest.raises(CollectionError, match="built with BM25 analyzer 'en_stem', not 'auto'"):
        open_collection(col.folder, encoder=col.encoder, config=CollectionConfig(bm25_analyzer="auto"))


def test_coverage_is_the_share_of_a_querys_terms_the_collection_holds(tmp_path):
    col = _col(tmp_path)
    col.index(_corpus(tmp_path, [{"_id": "a", "text": "The cats sleep most of the day in Berlin."},
                                 {"_id": "b", "text": "Dogs bark at night in 2024."}]))
    bm25 = col.snapshot().bm25
    assert bm25.coverage("cats sleeping at night") == 1.0  # stemmed as the documents were
    assert bm25.coverage("Katzen schlafen in Berlin") == pytest.approx(0.5)  # in, berlin of katzen schlafen in berlin
    assert bm25.coverage("猫整天睡觉") == 0.0  # pieces no English document has
    assert bm25.coverage("?!") is None  # no term at all

    legacy = _col(tmp_path, "legacy", bm25_analyzer="en_stem")
    legacy.index(_corpus(tmp_path, [{"_id": "a", "text": "The cats sleep."}]))
    assert legacy.snapshot().bm25.coverage("cats") is None  # tantivy's own terms: not read here


def test_a_query_mostly_foreign_to_the_collection_takes_the_low_coverage_weights(tmp_path):
    from hsearch.query.execute import for_coverage

    col = _col(tmp_path)
    col.index(_corpus(tmp_path, [{"_id": "a", "text": "The cats sleep most of the day."},
                                 {"_id": "b", "text": "Dogs bark at night."}]))
    snap = col.snapshot()
    weights = {"dense": 0.3, "sparse": 0.1, "colbert": 0.4, "bm25": 0.2}
    own = col.plan("cats at night", "all+bm25", weights=weights, low_coverage="0.5:colbert=1")
    assert own.low_coverage == (0.5, {"dense": 0.0, "sparse": 0.0, "colbert": 1.0, "bm25": 0.0})
    assert for_coverage(own, snap) is own  # every term is there
    foreign = col.plan("Katzen schlafen nachts", "all+bm25", weights=weights, low_coverage="0.5:colbert=1")
    assert for_coverage(foreign, snap).weights == {"dense": 0.0, "sparse": 0.0, "colbert": 1.0, "bm25": 0.0}
    # the search ranks by MaxSim alone then: every hit's fused score is its min-max colbert score
    hits = col.search("Katzen schlafen nachts", "all+bm25", weights=weights, low_coverage="0.5:colbert=1")
    colbert = [h.scores["colbert"] for h in hits]
    assert [h.score for h in hits] == pytest.approx([(c - min(colbert)) / (max(colbert) - min(colbert)) for c in colbert])
    off = col.plan("Katzen schlafen nachts", "all+bm25", weights=weights, low_coverage="off")
    assert off.low_coverage == () and for_coverage(off, snap) is off
    assert "under 50% of the query's BM25 terms: dense=0, sparse=0, colbert=1, bm25=0" in foreign.describe()


@pytest.mark.parametrize("value, message", [("0.5", "THRESHOLD:WEIGHTS"), ("x:colbert=1", "must be a number"),
                                            ("1.5:colbert=1", r"in \(0, 1\]"), ("0.5:bm25=0", "give one a positive"),
                                            ("0.5:colbert=1", "add bm25 to the mode")])
def test_bad_low_coverage_settings_say_what_to_do(value, message):
    from hsearch.query.plan import make_plan

    mode = "dense+sparse+colbert" if "add bm25" in message else "all+bm25"
    with pytest.raises(InputError, match=message):
        make_plan("cats", mode, low_coverage=value)
    assert make_plan("cats", "colbert", low_coverage="0.5:colbert=1").low_coverage == ()  # one signal: nothing to weigh
