"""Copy a `hsearch train` output's heads into the package (hsearch/data/heads/<name>/), as `make heads` does.

    python scripts/ship_heads.py heads-e5-small --colbert identity

--colbert identity ships the identity multi-vector head (normalised token states, the untrained
behaviour) instead of the trained one: for e5-small the trained multi-vector head measured worse than
the identity on every evaluation set (MODEL_CARD.md), so the shipped colbert_linear.pt is the
identity. The sparse head is always the trained one. training.json is copied with a `shipped` note;
MODEL_CARD.md and fusion.json are kept (written from the measurements; when the heads change, choose the
sparse weight again with scripts/debian_heldout.py and benchmarks/sweep_sparse_weight.py).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

PACKAGE = Path(__file__).resolve().parents[1] / "hsearch" / "data" / "heads"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trained", help="folder written by hsearch train")
    ap.add_argument("--name", default="e5-small")
    ap.add_argument("--colbert", choices=["identity", "trained"], default="identity")
    a = ap.parse_args(argv)
    src, dst = Path(a.trained), PACKAGE / a.name
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "sparse_linear.pt", dst / "sparse_linear.pt")
    if a.colbert == "trained":
        shutil.copy2(src / "colbert_linear.pt", dst / "colbert_linear.pt")
    else:
        trained = torch.load(src / "colbert_linear.pt", map_location="cpu", weights_only=True)["weight"]
        hidden = trained.shape[1]
        torch.save({"weight": torch.eye(hidden), "bias": torch.zeros(hidden)}, dst / "colbert_linear.pt")
    card = json.loads((src / "training.json").read_text())
    card["shipped"] = {"sparse_linear.pt": "trained", "colbert_linear.pt": a.colbert,
                       "why": "see MODEL_CARD.md" if a.colbert == "identity" else ""}
    (dst / "training.json").write_text(json.dumps(card, indent=1))
    print(f"{dst}: sparse head trained, colbert head {a.colbert}")


if __name__ == "__main__":
    main()
