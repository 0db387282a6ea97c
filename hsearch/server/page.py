"""`GET /`: the search page (plain HTML and JavaScript in search.html, no build step)."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def search_page():
    return HTMLResponse((Path(__file__).parent / "search.html").read_text(encoding="utf-8"))
