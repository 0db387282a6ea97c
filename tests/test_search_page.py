"""The search page at `/`, end to end: `hsearch serve` on 127.0.0.1 and the page driven in headless Chromium
(Debian's `chromium`; `.ci/run` installs it). The driver is tests/cdp_browser.py (stdlib only)."""
from __future__ import annotations

import json

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from cdp_browser import Browser, find_chromium  # noqa: E402
from server_process import start_server, stop  # noqa: E402

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium, "
                                "or set $CHROMIUM to a Chrome/Chromium binary)")

KEY = "page-key"
DOCS = [{"id": "dog", "text": "The dog runs in the park every morning.", "topic": "pets"},
        {"id": "cat", "text": "Cats sleep most of the day and purr.", "topic": "pets"},
        {"id": "paris", "title": "Paris", "text": "Paris is the capital of France.", "topic": "cities"},
        {"id": "html", "title": "<img src=x onerror=\"document.body.dataset.pwned=1\">",
         "text": "A <b>dog</b> walks past a <script>document.body.dataset.pwned=1</script> park."}]

# What the page shows, read from its DOM: the status line, each hit, the plan.
READ_PAGE = """(() => ({
    status: document.getElementById('status').textContent,
    error: document.getElementById('status').className === 'error',
    hits: [...document.querySelectorAll('#hits .hit')].map((h) => ({
        heading: h.querySelector('h3').textContent,
        snippet: h.querySelector('.snippet').textContent,
        bars: [...h.querySelectorAll('.bars .bar')].map((b) => ({
            signal: b.previousElementSibling.textContent, value: b.nextElementSibling.textContent,
            width: b.firstElementChild.style.width}))})),
    plan: document.getElementById('plan').hidden ? null : document.getElementById('plan').textContent,
    injected: document.querySelectorAll('#hits img, #hits b, #hits script').length,
    pwned: document.body.dataset.pwned || null,
}))()"""
SETTLED = "!['', 'searching...'].includes(document.getElementById('status').textContent)"


@pytest.fixture(scope="module")
def url(tmp_path_factory, tiny_bgem3):
    from hsearch.engine import open_collection

    folder = tmp_path_factory.mktemp("page") / "col"
    open_collection(folder, create=True, model=str(tiny_bgem3)).add(DOCS)
    proc, url = start_server([folder], "--api-key", KEY)
    yield url
    assert stop(proc) == 0


@pytest.fixture()
def page(url):
    with Browser(CHROMIUM) as b:
        b.goto(url + "/")
        yield b
        assert not b.errors, b.errors  # no uncaught exception, no console.error, in any test


def search(page, query, mode=None, fusion=None, k=None, key=None):
    """Fill in the form as a user would and submit it with Enter; what the page shows once it has answered."""
    if key is not None:
        page.type("#key", key)
    if mode:
        page.choose("#mode", mode)
    if fusion:
        page.choose("#fusion", fusion)
    if k is not None:
        page.type("#k", str(k))
    page.type("#q", query)
    page.eval("document.getElementById('status').textContent = ''")  # so the wait sees this search's answer
    page.press_enter()
    page.wait_for(SETTLED)
    return page.eval(READ_PAGE)


def api_query(url, **body):
    r = httpx.post(url + "/collections/col/query", json=body, headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("mode,fusion", [("dense+sparse+bm25", "weighted"), ("all", "rrf")])
def test_results_with_snippets_score_bars_and_plan(page, url, mode, fusion):
    # first visit: the page asks for /collections without a key and says what is missing
    page.wait_for(SETTLED)
    first = page.eval(READ_PAGE)
    assert first["error"] and "missing API key" in first["status"] and first["hits"] == []
    shown = search(page, "dog park", mode=mode, fusion=fusion, k=3, key=KEY)
    answer = api_query(url, query="dog park", mode=mode, fusion=fusion, k=3, explain=True)
    assert not shown["error"] and shown["status"].startswith("3 hits in ") and shown["status"].endswith(" ms")
    assert page.eval("document.getElementById('collection').value") == "col"
    # the same hits as the API gives, in its order, each with its snippet and one bar per signal
    assert len(shown["hits"]) == len(answer["hits"]) == 3
    signals = mode.split("+") if mode != "all" else ["dense", "sparse", "colbert"]
    top = {s: max(max(h["scores"][s] for h in answer["hits"]), 0) for s in signals}
    for rank, (seen, hit) in enumerate(zip(shown["hits"], answer["hits"]), 1):
        assert seen["heading"].startswith(f"{rank}. {hit['title'] or hit['id']} ")
        assert f"{hit['score']:.4f}" in seen["heading"]
        assert seen["snippet"] == hit["snippet"] and seen["snippet"]
        assert [b["signal"] for b in seen["bars"]] == list(hit["scores"]) and set(hit["scores"]) == set(signals)
        for bar in seen["bars"]:
            v = hit["scores"][bar["signal"]]
            assert bar["value"] == f"{v:.4f}"
            # each signal's bar is relative to that signal's best score among the hits shown
            want = max(v, 0) / top[bar["signal"]] * 100 if top[bar["signal"]] > 0 else 0
            assert float(bar["width"].rstrip("%")) == pytest.approx(want, abs=0.01)  # CSS keeps ~6 digits
    for s in signals:
        if top[s] > 0:
            assert any(b["signal"] == s and b["width"] == "100%" for h in shown["hits"] for b in h["bars"])
    # the plan that --explain prints
    assert shown["plan"] == answer["plan"] and "retrieve:" in shown["plan"] and "fuse:" in shown["plan"]
    assert ("fuse: reciprocal rank fusion" if fusion == "rrf" else "fuse: weighted sum") in shown["plan"]


def test_markup_in_documents_is_shown_as_text(page, url):
    shown = search(page, "dog walks past a park", mode="bm25", k=10, key=KEY)
    answer = api_query(url, query="dog walks past a park", mode="bm25", k=10)
    rank = [h["id"] for h in answer["hits"]].index("html")
    seen, hit = shown["hits"][rank], answer["hits"][rank]
    assert seen["heading"].startswith(f"{rank + 1}. {DOCS[3]['title']} ") and "<b>dog</b>" in seen["snippet"]
    assert seen["snippet"] == hit["snippet"]  # the markup as text, character for character
    assert shown["injected"] == 0 and shown["pwned"] is None  # no element made from it, no script run


def test_errors_are_shown_and_cleared(page, url):
    wrong = search(page, "dog", key="not-the-key")
    assert wrong["error"] and "wrong API key" in wrong["status"] and wrong["hits"] == []
    found = search(page, "dog", mode="bm25", key=KEY)
    assert not found["error"] and found["hits"]
    blank = search(page, "   ")  # a query of spaces: the server's message, and the old hits are gone
    assert blank["error"] and "empty query" in blank["status"] and blank["hits"] == [] and blank["plan"] is None
    # while the next query runs, the status line is no longer shown as an error
    page.type("#q", "cat")
    page.eval("window._fetch = window.fetch; window.fetch = (...a) => new Promise((r) => setTimeout(() => "
              "r(window._fetch(...a)), 400))")
    page.press_enter()
    assert page.wait_for("document.getElementById('status').textContent === 'searching...' && "
                         "document.getElementById('status').className !== 'error'")
    page.wait_for(SETTLED)
    assert page.eval(READ_PAGE)["hits"]
    # the key is remembered: a reload lists the collections without asking again
    page.goto(url + "/")
    page.wait_for("document.getElementById('collection').value === 'col'")
    assert page.eval(READ_PAGE)["status"] == ""


def test_server_unreachable(page, url):
    """A request that fails in the network (server gone, proxy error page) says so instead of hanging."""
    search(page, "dog", key=KEY)
    page.eval("window.fetch = () => Promise.reject(new TypeError('Failed to fetch'))")
    gone = search(page, "dog")
    assert gone["error"] and "cannot reach the server" in gone["status"] and gone["hits"] == []
    page.eval("window.fetch = () => Promise.resolve(new Response('<h1>502 Bad Gateway</h1>', "
              "{status: 502, headers: {'content-type': 'text/html'}}))")
    proxy = search(page, "dog")
    assert proxy["error"] and "502" in proxy["status"] and proxy["hits"] == []


def test_only_the_latest_query_is_shown(page, url):
    """Two queries in flight, the first answered last: the page shows the second one's hits."""
    search(page, "dog", mode="bm25", key=KEY)
    page.eval("""(() => { const real = window.fetch; let n = 0;
        window.fetch = (u, o) => { const slow = u.endsWith('/query') && n++ === 0;
            return new Promise((r) => setTimeout(() => r(real(u, o)), slow ? 800 : 0)); }; })()""")
    page.type("#q", "Paris capital")
    page.press_enter()
    page.type("#q", "cats sleep purr")
    page.press_enter()
    page.wait_for("document.querySelector('#hits .hit h3')?.textContent.startsWith('1. cat ')")
    page.eval("new Promise((r) => setTimeout(r, 1200))")  # the slow first answer arrives meanwhile
    shown = page.eval(READ_PAGE)
    assert shown["hits"][0]["heading"].startswith("1. cat ") and "cats sleep purr" in shown["plan"], shown
    assert json.dumps(shown).count("Paris capital") == 0
