"""The text table `hsearch eval` prints, from the result dict of `beir.evaluate` or `synthetic.run_synthetic`."""
from __future__ import annotations

BEIR_COLUMNS = ("nDCG@10", "Recall@100", "MRR@10")


def format_scores(result: dict[str, dict]) -> str:
    """One row per mode: nDCG@10, Recall@100 and MRR@10 of a BEIR run, or Acc@1 and Acc@1 per length of
    a synthetic one; then, for each mode whose weights were swept, the weights chosen and where."""
    if any("by_length" in r for r in result.values()):  # a synthetic task (run_synthetic)
        columns = ["Acc@1"] + [f"@{n}" for n in next(iter(result.values()))["by_length"]]
        rows = {m: [r["Acc@1"], *r["by_length"].values()] for m, r in result.items()}
    else:
        columns = list(BEIR_COLUMNS)
        rows = {m: [r[c] for c in columns] for m, r in result.items()}
    width = max(len("mode"), *(len(m) for m in rows))
    lines = [f"{'mode':<{width}}  " + "  ".join(f"{c:>10}" for c in columns)]
    lines += [f"{m:<{width}}  " + "  ".join(f"{v:>10.4f}" for v in values) for m, values in rows.items()]
    for m, r in result.items():
        if "weights" in r:
            w = ", ".join(f"{s}={v:.2f}" for s, v in r["weights"].items())
            lines.append(f"{m}: weights {w} (best of {r['sweep']['points']} on {r['sweep']['split']}, "
                         f"nDCG@10 {r['sweep']['nDCG@10']:.4f} there)")
    return "\n".join(lines)
