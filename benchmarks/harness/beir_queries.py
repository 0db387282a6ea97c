"""The queries of a BEIR dataset split that have judgments, in qrels order."""
from __future__ import annotations

import json
from pathlib import Path


def load_test_queries(dataset: Path, split: str = "test", limit: int | None = None) -> list[str]:
    qids = []
    with open(dataset / "qrels" / f"{split}.tsv", encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3 and parts[0] not in ("query-id", "query_id") and parts[0] not in qids:
                qids.append(parts[0])
    text = {}
    with open(dataset / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                text[str(r["_id"])] = r["text"]
    out = [text[q] for q in qids if q in text]
    return out[:limit] if limit else out
