"""`hsearch serve` as its users meet it: a real server process on 127.0.0.1, spoken to over HTTP."""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from server_process import ROOT, start_server, stop  # noqa: E402

KEY = "test-key"
DOCS = [{"id": "dog", "text": "The dog runs in the park every morning.", "lang": "en"},
        {"id": "cat", "text": "Cats sleep most of the day and purr.", "lang": "en"},
        {"id": "paris", "title": "Paris", "text": "Paris is the capital of France.", "lang": "en", "year": 2020},
        {"id": "berlin", "text": "Berlin ist die Hauptstadt von Deutschland.", "lang": "de", "year": 2018}]


def _collection(folder, model):
    from hsearch.engine import open_collection

    col = open_collection(folder, create=True, model=str(model))
    col.add(DOCS)
    return col


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_bgem3):
    """(url, collection folder): one server for the module, with an API key and a 200 kB body limit."""
    folder = tmp_path_factory.mktemp("served") / "col"
    _collection(folder, tiny_bgem3)
    proc, url = start_server([folder], "--api-key", KEY, "--max-body", "200000")
    yield url, folder
    assert stop(proc) == 0
    assert not (folder / "server.json").exists()  # removed on a clean stop


@pytest.fixture()
def http(server):
    with httpx.Client(base_url=server[0], headers={"authorization": f"Bearer {KEY}"}, timeout=60) as c:
        yield c


def _ids(answer):
    return [h["id"] for h in answer["hits"]]


def test_query_info_health(http, server):
    r = http.post("/collections/col/query", json={"query": "dog park", "mode": "dense+sparse", "k": 3,
                                                   "explain": True})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert len(answer["hits"]) == 3 and answer["took_ms"] > 0
    hit = answer["hits"][0]
    assert set(hit) >= {"id", "score", "scores", "snippet", "path", "title", "metadata"}
    assert set(hit["scores"]) == {"dense", "sparse"}
    assert "retrieve: dense top-100, sparse top-100" in answer["plan"]
    # the same query in this process gives the same hits, in the same order
    from hsearch.engine import open_collection

    local = open_collection(server[1]).search("dog park", mode="dense+sparse", k=3)
    assert _ids(answer) == [h.id for h in local]
    assert [h["score"] for h in answer["hits"]] == pytest.approx([h.score for h in local], abs=1e-6)
    filtered = http.post("/collections/col/query", json={"query": "city", "where": ["lang=de"], "mode": "bm25+dense"})
    assert _ids(filtered.json()) == ["berlin"]
    foreign = http.post("/collections/col/query", json={"query": "Hund Katze", "mode": "bm25+dense", "explain": True,
                                                        "weights": "dense=0.5,bm25=0.5", "low_coverage": "0.5:dense=1"})
    assert "of the query's BM25 terms: dense=1, bm25=0" in foreign.json()["plan"]
    info = http.get("/collections/col").json()
    assert info["documents"] >= 4 and info["model"] == open_collection(server[1]).info()["model"]
    assert http.get("/health").json() == {"status": "ok"}
    assert [c["name"] for c in http.get("/collections").json()["collections"]] == ["col"]
    assert "/collections/{name}/query" in http.get("/openapi.json").json()["paths"]


def test_upsert_get_delete(http):
    doc = {"id": "volcano", "text": "Volcanoes erupt molten lava.", "title": "Volcanoes", "topic": "geo"}
    r = http.put("/collections/col/documents", json=[doc])
    assert r.status_code == 200 and r.json()["added"] == 1, r.text
    found = http.post("/collections/col/query", json={"query": "volcanoes lava", "mode": "bm25", "k": 1}).json()
    assert _ids(found) == ["volcano"] and found["hits"][0]["metadata"] == {"topic": "geo"}
    got = http.get("/collections/col/documents/volcano").json()
    assert got == {"id": "volcano", "title": "Volcanoes", "path": None, "text": doc["text"],
                   "metadata": {"topic": "geo"}}
    replaced = http.put("/collections/col/documents", json=[{**doc, "text": "Volcanoes sleep for centuries."}])
    assert replaced.json()["updated"] == 1
    assert http.get("/collections/col/documents/volcano").json()["text"] == "Volcanoes sleep for centuries."
    r = http.request("DELETE", "/collections/col/documents", json={"ids": ["volcano", "never-was"]})
    assert r.json() == {"status": "ok", "deleted": 1}
    assert http.get("/collections/col/documents/volcano").status_code == 404
    gone = http.post("/collections/col/query", json={"query": "volcanoes lava", "mode": "bm25"}).json()
    assert "volcano" not in _ids(gone)


def test_embeddings_match_the_library(http, tiny_bgem3):
    from hsearch.encode import load_encoder

    texts = ["The dog runs in the park.", "Quantum computers use qubits."]
    plain = http.post("/v1/embeddings", json={"input": texts, "model": "col"}).json()
    assert plain["object"] == "list" and [d["index"] for d in plain["data"]] == [0, 1]
    assert set(plain["data"][0]) == {"object", "index", "embedding"}  # OpenAI's shape unless asked for more
    assert plain["usage"]["prompt_tokens"] == plain["usage"]["total_tokens"] > len(texts)
    full = http.post("/v1/embeddings", json={"input": texts, "return": ["dense", "sparse", "colbert"]}).json()
    b64 = http.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64",
                                            "return": ["dense", "colbert"]}).json()
    ref = load_encoder(str(tiny_bgem3)).encode(texts, is_query=False)
    for i, r in enumerate(ref):
        dense = np.array(full["data"][i]["embedding"], dtype=np.float32)
        assert np.allclose(dense, r.dense, atol=1e-5)
        assert np.array_equal(dense, np.array(plain["data"][i]["embedding"], dtype=np.float32))
        decoded = np.frombuffer(base64.b64decode(b64["data"][i]["embedding"]), dtype="<f4")
        assert np.array_equal(decoded, dense)  # base64 carries exactly the float response
        sparse = full["data"][i]["sparse"]
        assert dict(zip(sparse["indices"], sparse["values"])) == pytest.approx(r.sparse, abs=1e-5)
        colbert = np.array(full["data"][i]["colbert"], dtype=np.float32)
        assert colbert.shape == r.colbert.shape and np.allclose(colbert, r.colbert, atol=1e-5)
        rows = np.stack([np.frombuffer(base64.b64decode(x), dtype="<f4") for x in b64["data"][i]["colbert"]])
        assert np.array_equal(rows, colbert)
    one = http.post("/v1/embeddings", json={"input": texts[0], "input_type": "query"}).json()
    query_ref = load_encoder(str(tiny_bgem3)).encode([texts[0]], is_query=True)[0]
    assert np.allclose(one["data"][0]["embedding"], query_ref.dense, atol=1e-5)


BAD = [
    ("malformed JSON", "POST", "/collections/col/query", {"content": b'{"query": "dog",'}, 422, "malformed JSON"),
    ("unknown mode", "POST", "/collections/col/query", {"json": {"query": "dog", "mode": "dnse"}}, 400,
     "unknown mode 'dnse'; choose from dense, sparse, colbert, bm25"),
    ("k zero", "POST", "/collections/col/query", {"json": {"query": "dog", "k": 0}}, 422, "k: "),
    ("k too large", "POST", "/collections/col/query", {"json": {"query": "dog", "k": 10 ** 6}}, 422, "k: "),
    ("empty query", "POST", "/collections/col/query", {"json": {"query": ""}}, 422, "query: "),
    ("unknown field", "POST", "/collections/col/query", {"json": {"query": "dog", "wehre": ["a=b"]}}, 422, "wehre"),
    ("bad where", "POST", "/collections/col/query", {"json": {"query": "dog", "where": ["year>abc"]}}, 400,
     "is not a number"),
    ("bad low_coverage", "POST", "/collections/col/query", {"json": {"query": "dog", "mode": "dense+bm25",
                                                                     "low_coverage": "half"}}, 400, "THRESHOLD:WEIGHTS"),
    ("oversize body", "PUT", "/collections/col/documents", {"json": [{"id": "x", "text": "word " * 50_000}]}, 413,
     "request body over 200000 bytes"),
    ("non-UTF-8", "POST", "/collections/col/query", {"content": b'{"query": "caf\xe9 \xff"}'}, 400, "UTF-8"),
    ("lone surrogate in a document", "PUT", "/collections/col/documents",
     {"content": b'[{"id": "s", "text": "bad \\ud800 text"}]'}, 400, "not valid Unicode"),
    ("lone surrogate in embeddings", "POST", "/v1/embeddings", {"content": b'{"input": ["\\ud800"]}'}, 400,
     "not valid Unicode"),
    ("lone surrogate in a query", "POST", "/collections/col/query", {"content": b'{"query": "\\ud800"}'}, 422, ""),
    ("whitespace query", "POST", "/collections/col/query", {"json": {"query": "  "}}, 400, "empty query"),
    ("unknown collection", "POST", "/collections/nope/query", {"json": {"query": "dog"}}, 404, "served: col"),
    ("document without text", "PUT", "/collections/col/documents", {"json": [{"id": "x"}]}, 400,
     "needs an 'id' and a non-empty 'text'"),
    ("documents not a list", "PUT", "/collections/col/documents", {"json": {"id": "x", "text": "y"}}, 422, ""),
    ("delete without ids", "DELETE", "/collections/col/documents", {"json": {"ids": []}}, 422, "ids"),
    ("unknown embeddings output", "POST", "/v1/embeddings", {"json": {"input": "x", "return": ["sparse", "nope"]}},
     422, "return"),
    ("wrong dimensions", "POST", "/v1/embeddings", {"json": {"input": "x", "dimensions": 7}}, 400, "omit dimensions"),
    ("unknown model", "POST", "/v1/embeddings", {"json": {"input": "x", "model": "gpt-9"}}, 404, "use one of"),
]


@pytest.mark.parametrize("what,method,path,kwargs,status,message", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_clean_4xx(http, what, method, path, kwargs, status, message):
    headers = {"content-type": "application/json"}
    r = http.request(method, path, headers=headers, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == "error" and message in body["message"], body
    assert http.get("/health").status_code == 200  # still serving


def test_api_key(server):
    url = server[0]
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": KEY}):
        r = httpx.post(url + "/collections/col/query", json={"query": "dog"}, headers=headers)
        assert r.status_code == 401 and "Authorization: Bearer" in r.json()["message"], r.text
    assert httpx.get(url + "/health").status_code == 200  # liveness needs no key
    r = httpx.post(url + "/collections/col/query", json={"query": "dog"}, headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == 200


def test_concurrent_queries_while_writing(http, server):
    """8 query threads for 2 s while one thread upserts and deletes: no failed request, every acknowledged
    upsert findable at once, every acknowledged delete gone at once."""
    url = server[0]
    stop_at = time.monotonic() + 2.0
    failures, counts, lost, kept = [], [], [], set()

    def reader(i):
        n = 0
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {KEY}"}, timeout=60) as c:
            while time.monotonic() < stop_at:
                r = c.post("/collections/col/query", json={"query": f"dog park {i}", "mode": "dense+sparse+bm25",
                                                           "k": 5})
                if r.status_code != 200:
                    failures.append(r.text)
                n += 1
        counts.append(n)

    def writer():
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {KEY}"}, timeout=60) as c:
            i = 0
            while time.monotonic() < stop_at and i < 50:
                doc_id = f"w{i}"
                r = c.put("/collections/col/documents", json=[{"id": doc_id, "text": f"Writer note {i} about ferns."}])
                if r.status_code != 200:
                    failures.append(r.text)
                elif c.get(f"/collections/col/documents/{doc_id}").status_code != 200:
                    lost.append(doc_id)
                kept.add(doc_id)
                if i % 2:
                    r = c.request("DELETE", "/collections/col/documents", json={"ids": [doc_id]})
                    if r.status_code != 200 or r.json()["deleted"] != 1:
                        failures.append(r.text)
                    elif c.get(f"/collections/col/documents/{doc_id}").status_code != 404:
                        lost.append(f"{doc_id} still there")
                    kept.discard(doc_id)
                i += 1

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures and not lost, (failures[:3], lost[:3])
    assert len(counts) == 8 and min(counts) > 0 and kept
    hits = http.post("/collections/col/query", json={"query": "ferns", "mode": "bm25", "k": 100,
                                                     "where": ["id~w*"]}).json()
    assert sorted(_ids(hits)) == sorted(kept)  # each kept one once (no duplicates), none of the deleted
    http.request("DELETE", "/collections/col/documents", json={"ids": sorted(kept)})


def test_kill_during_writes_keeps_acknowledged(tmp_path, tiny_bgem3):
    """kill -9 while upserts stream in, then reopen: every acknowledged write is there; writing works again."""
    folder = tmp_path / "col"
    _collection(folder, tiny_bgem3)
    proc, url = start_server([folder])
    acked = []

    def write():
        with httpx.Client(base_url=url, timeout=60) as c:
            for i in range(200):
                try:
                    r = c.put("/collections/col/documents", json=[{"id": f"k{i}", "text": f"Kill test {i} fern."}])
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    acked.append(f"k{i}")

    t = threading.Thread(target=write)
    t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t.join(60)
    assert len(acked) >= 5
    proc, url = start_server([folder])  # a new server over the stale server.json
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            assert all(c.get(f"/collections/col/documents/{i}").status_code == 200 for i in acked)
    finally:
        assert stop(proc) == 0
    from hsearch.engine import open_collection

    col = open_collection(folder)
    assert all(col.get(i) is not None for i in acked)
    assert {h.id for h in col.search("fern", mode="bm25", k=300, where=["id~k*"])} >= set(acked)
    col.add([{"id": "after", "text": "Written after the crash."}])  # the dead server's write lock is released
    assert col.get("after")["text"] == "Written after the crash."
    # a stale server.json (dead pid) is ignored: `hsearch query` searches in its own process
    (folder / "server.json").write_text(json.dumps({"url": url, "pid": proc.pid, "name": "col"}))
    out = subprocess.run([sys.executable, "-m", "hsearch.cli", "query", "crash", "-c", str(folder), "--explain"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "answered by the server" not in out.stdout and "after" in out.stdout
    # a live pid (a reused one: this test's own) where nothing answers at the url: searched here as well
    (folder / "server.json").write_text(json.dumps({"url": url, "pid": os.getpid(), "name": "col"}))
    out = subprocess.run([sys.executable, "-m", "hsearch.cli", "query", "crash", "-c", str(folder), "--explain"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "answered by the server" not in out.stdout and "after" in out.stdout
    # named with --server, an unreachable server is an error that says what to do
    out = subprocess.run([sys.executable, "-m", "hsearch.cli", "query", "crash", "-c", str(folder), "--server", url],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode != 0 and "cannot reach the server" in out.stderr and "hsearch serve" in out.stderr


def test_cli_query_uses_the_server(server):
    url, folder = server
    env = {**os.environ, "HSEARCH_API_KEY": KEY}
    run = [sys.executable, "-m", "hsearch.cli", "query", "dog park", "-c", str(folder), "-k", "3"]
    local = subprocess.run(run + ["--local", "--json"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    found = subprocess.run(run + ["--json"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    given = subprocess.run(run + ["--server", url, "--explain"], capture_output=True, text=True, cwd=ROOT, env=env,
                           timeout=300)
    assert local.returncode == found.returncode == given.returncode == 0, (found.stderr, given.stderr)
    served, here = json.loads(found.stdout), json.loads(local.stdout)  # server.json found the server
    assert [h["id"] for h in served] == [h["id"] for h in here]
    assert [h["score"] for h in served] == pytest.approx([h["score"] for h in here], abs=1e-6)
    assert f"answered by the server at {url}" in given.stdout
    assert "answered by" in subprocess.run(run + ["--explain"], capture_output=True, text=True, cwd=ROOT, env=env,
                                           timeout=300).stdout
    bad = subprocess.run(run + ["--server", url, "--mode", "dnse"], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=300)
    assert bad.returncode != 0 and "unknown mode 'dnse'" in bad.stderr


def test_search_page_is_served(server):
    """The page and what it calls: the HTML (no key needed) and /collections (key needed). The page driven in a
    browser: tests/test_search_page.py."""
    url = server[0]
    page = httpx.get(url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="q"' in page.text and "/collections/" in page.text and "textContent" in page.text
    assert httpx.get(url + "/collections").status_code == 401
