"""Trained heads against untrained ones: nDCG@10 of every mode, per dataset, per model variant.

    python benchmarks/bench_heads.py --variants before=e5-small-base,shipped=e5-small \\
        --datasets ../shared/datasets/scifact,../shared/datasets/cranfield,../shared/datasets/qmsum \\
        --cross ../shared/datasets/xquad-r/de:../shared/datasets/xquad-r/en \\
        --modes dense,sparse,colbert,bm25,dense+sparse,all,dense+sparse+colbert+bm25 --memo /tmp/memo
    python benchmarks/bench_heads.py --quick        # smoke run (tests): tiny slice, two head sets

Every variant is a model folder with the same transformer and other heads (`hsearch train` output), so
the transformer's last hidden states of a text are the same for all of them. The first variant's run
records them (float32, per dataset, in --memo); every later variant, and every rerun, reads them
instead of running the transformer again. Nothing else is shared: each variant gets its own
collection, built by the real writer (FAISS, the sparse inverted index, the token store, tantivy) from
the heads' own outputs, and queried by the real planner. The dense row is therefore the same for every
variant, which the report checks: it is the proof that the memo gave every variant the same states.
A variant whose transformer differs from the first one's (training.json's base_fingerprint) is refused.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.report import commit_header  # noqa: E402
from quality import cross_folder, table  # noqa: E402

from hsearch.evaluate.beir import as_run, load_beir, run_modes, score  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


class StateMemo:
    """Last hidden states of the transformer, per token-id sequence, in one append-only float32 file."""

    def __init__(self, folder: Path, hidden: int):
        self.folder, self.hidden = folder, hidden
        folder.mkdir(parents=True, exist_ok=True)
        self.path, self.index_path = folder / "states.f32", folder / "index.jsonl"
        self.index: dict[str, tuple[int, int]] = {}
        if self.index_path.exists():
            for line in self.index_path.read_text().splitlines():
                key, offset, n = line.split()
                self.index[key] = (int(offset), int(n))
        size = self.path.stat().st_size if self.path.exists() else 0
        self.rows = size // (4 * hidden)
        self._map = None
        self.hits = self.misses = 0

    @staticmethod
    def key(ids) -> str:
        return hashlib.sha1(np.asarray(ids, np.int64).tobytes()).hexdigest()

    def _read(self, offset: int, n: int) -> np.ndarray:
        if self._map is None or self._map.shape[0] < offset + n:
            self._map = np.memmap(self.path, dtype=np.float32, mode="r", shape=(self.rows, self.hidden))
        return np.array(self._map[offset:offset + n])  # a copy: torch wants writable memory

    def attach(self, encoder) -> None:
        """Route `encoder.hidden_states` through the memo (an instance attribute shadows the method)."""
        import torch

        real = encoder.hidden_states

        def hidden_states(batch_ids):
            keys = [self.key(x) for x in batch_ids]
            if all(k in self.index for k in keys):
                self.hits += len(keys)
                width = max(len(x) for x in batch_ids)
                hidden = torch.zeros(len(batch_ids), width, self.hidden)
                mask = torch.zeros(len(batch_ids), width, dtype=torch.long)
                ids = torch.full((len(batch_ids), width), encoder.tokenizer.pad_token_id or 0, dtype=torch.long)
                for r, (x, k) in enumerate(zip(batch_ids, keys)):
                    hidden[r, :len(x)] = torch.from_numpy(self._read(*self.index[k]))
                    mask[r, :len(x)] = 1
                    ids[r, :len(x)] = torch.tensor(x, dtype=torch.long)
                return hidden, mask, ids
            self.misses += len(keys)
            hidden, mask, ids = real(batch_ids)
            with open(self.path, "ab") as f, open(self.index_path, "a") as idx:
                for r, (x, k) in enumerate(zip(batch_ids, keys)):
                    if k not in self.index:
                        f.write(hidden[r, :len(x)].float().cpu().numpy().tobytes())
                        self.index[k] = (self.rows, len(x))
                        idx.write(f"{k} {self.rows} {len(x)}\n")
                        self.rows += len(x)
            return hidden, mask, ids

        encoder.hidden_states = hidden_states


def run(variants: list[tuple[str, str]], jobs: list[tuple[str, Path]], modes: list[str], memo_root: Path,
        work: Path, limit_queries: int | None, normalize: str | None = None,
        fusion: str = "weighted", weights: str | None = None) -> tuple[list, list[str]]:
    from hsearch.config import CollectionConfig
    from hsearch.encode import load_encoder
    from hsearch.encode.loader import transformer_fingerprint
    from hsearch.engine import open_collection

    rows, notes, base = [], [], None
    for name, folder in jobs:
        data = load_beir(folder, "test", limit_queries)
        dense_ndcg = {}
        for label, model in variants:
            enc = load_encoder(model)
            fp = transformer_fingerprint(enc)
            if base is None:
                base = fp
            elif fp != base:
                raise SystemExit(f"{label} ({model}) has another transformer ({fp}, not {base}): its states differ")
            memo = StateMemo(memo_root / base / hashlib.sha1(str(data.corpus.resolve()).encode()).hexdigest()[:12],
                             enc.dim)
            memo.attach(enc)
            t0 = time.perf_counter()
            col = open_collection(work / f"{name.replace('/', '_')}-{label}", create=True, encoder=enc,
                                  config=CollectionConfig(model=enc.spec.name))
            col.index(data.corpus)
            hits = run_modes(col, data.queries, modes, normalize=normalize, fusion=fusion, weights=weights)
            for m in modes:
                result = score(as_run(hits[m]), data.qrels)
                rows.append((name, f"{label}: {m}", result))
                if m == "dense":
                    dense_ndcg[label] = result["nDCG@10"]
            notes.append(f"{name} / {label}: {time.perf_counter() - t0:.0f} s, transformer states "
                         f"{memo.misses} computed, {memo.hits} from the memo")
        if len(set(dense_ndcg.values())) > 1:
            notes.append(f"WARNING {name}: dense differs between variants {dense_ndcg}: states were not shared")
    return rows, notes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="before=e5-small-base,shipped=e5-small",
                    help="LABEL=MODEL,...: model folders or aliases sharing one transformer")
    ap.add_argument("--datasets", default="", help="comma-separated BEIR folders")
    ap.add_argument("--cross", default="", help="comma-separated QUERIES_DIR:CORPUS_DIR pairs")
    ap.add_argument("--modes", default="dense,sparse,colbert,bm25,dense+sparse,dense+bm25,all,dense+sparse+colbert+bm25")
    ap.add_argument("--limit-queries", type=int, default=None)
    ap.add_argument("--normalize", choices=["none", "minmax", "dbsf"], default=None,
                    help="score normalisation of the fused modes (default: the planner's)")
    ap.add_argument("--weights", default=None, help="fusion weights, e.g. dense=0.4,sparse=0.1 (default: the planner's)")
    ap.add_argument("--fusion", choices=["weighted", "rrf"], default="weighted", help="how the fused modes combine")
    ap.add_argument("--memo", default=None, help="folder for the recorded states (default: a temporary one)")
    ap.add_argument("--work", default=None, help="folder for the collections (default: a temporary one)")
    ap.add_argument("--quick", action="store_true", help="smoke run on a tiny random model and a made-up corpus")
    ap.add_argument("--out", default=None, help="markdown file to append the report to (default: RESULTS.md; "
                    "--quick appends only when --out is given)")
    a = ap.parse_args(argv)
    modes = [m for m in a.modes.split(",") if m]
    with tempfile.TemporaryDirectory(prefix="hsearch-heads-") as tmp:
        tmp = Path(tmp)
        if a.quick:
            variants, jobs = quick_setup(tmp)
            modes = ["dense", "sparse", "colbert", "all"]
        else:
            variants = [tuple(v.split("=", 1)) for v in a.variants.split(",") if v]
            jobs = [(_name(Path(p)), Path(p)) for p in a.datasets.split(",") if p]
            for pair in filter(None, a.cross.split(",")):
                q, c = (Path(x) for x in pair.split(":", 1))
                jobs.append((f"{q.parent.name}/{q.name}->{c.name}", cross_folder(q, c, tmp)))
        if not jobs:
            raise SystemExit("no dataset: give --datasets and/or --cross (or --quick)")
        rows, notes = run(variants, jobs, modes, Path(a.memo) if a.memo else tmp / "memo",
                          Path(a.work) if a.work else tmp / "work", a.limit_queries, a.normalize, a.fusion, a.weights)
    n = f"first {a.limit_queries} queries" if a.limit_queries else "all test queries"
    n += "".join(f", {x}" for x in (a.normalize and f"--normalize {a.normalize}",
                                    a.fusion != "weighted" and f"--fusion {a.fusion}",
                                    a.weights and f"--weights {a.weights}") if x)
    head = (f"## {datetime.datetime.now():%Y-%m-%d %H:%M} heads: {', '.join(f'{l}={m}' for l, m in variants)} ({n})\n\n"
            + commit_header() + "\n")
    report = head + "\n" + table(rows) + "\n\n" + "\n".join(f"- {x}" for x in notes) + "\n"
    print(report)
    out = a.out or (None if a.quick else RESULTS)
    if out:
        with open(out, "a", encoding="utf-8") as f:
            f.write(report + "\n")
    if any(x.startswith("WARNING") for x in notes):
        raise SystemExit(1)


def _name(p: Path) -> str:
    return f"{p.parent.name}/{p.name}" if p.parent.name == "xquad-r" else p.name


def quick_setup(tmp: Path):
    """A tiny random BGE-M3 folder, a copy with other heads, and a 6-document BEIR folder."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny_model import build_tiny_bgem3  # noqa: E402

    base = build_tiny_bgem3(tmp / "tiny")
    other = tmp / "tiny-other"
    other.mkdir()
    for f in base.iterdir():
        if f.is_file() and f.suffix != ".pt":
            (other / f.name).write_bytes(f.read_bytes())
    torch.manual_seed(1)
    hidden = json.loads((base / "config.json").read_text())["hidden_size"]
    torch.save(torch.nn.Linear(hidden, 1).state_dict(), other / "sparse_linear.pt")
    torch.save(torch.nn.Linear(hidden, hidden).state_dict(), other / "colbert_linear.pt")
    from hsearch.encode import load_encoder

    (other / "training.json").write_text(json.dumps({"base_fingerprint": load_encoder(str(base)).spec.fingerprint}))
    data = tmp / "beir"
    (data / "qrels").mkdir(parents=True)
    docs = ["the cat sat on the mat", "dogs chase cats in the park", "a quiet river runs to the sea",
            "stock markets fell sharply today", "the recipe needs flour and eggs", "rain is expected tomorrow"]
    queries = ["cat mat", "river sea", "markets fell", "flour eggs"]
    (data / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": t}) + "\n"
                                               for i, t in enumerate(docs)))
    (data / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": t}) + "\n"
                                                for i, t in enumerate(queries)))
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\td{j}\t1\n" for i, j in enumerate([0, 2, 3, 4])))
    return [("before", str(base)), ("other", str(other))], [("toy", data)]


if __name__ == "__main__":
    main()
