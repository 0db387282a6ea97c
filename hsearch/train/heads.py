"""The trainable heads, differentiable versions of BGE-M3's three scores (Chen et al. 2024, "BGE M3-Embedding",
section 3.2), and the losses.

Scores match the encoder's (hsearch/encode/base.py) and the stores' (hsearch/query/scoring.py):
dense = cosine of the pooled states; sparse = sum over shared token ids of the max-pooled
relu(W h) weights; colbert = mean over query tokens of the max cosine with a document token (first
position dropped).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hsearch.encode.base import prefix_length

SIGNALS = ("dense", "sparse", "colbert")
# BGE-M3's teacher: w_d * s_dense + w_s * s_sparse + w_c * s_colbert (the paper's 1, 0.3, 1)
TEACHER_WEIGHTS = {"dense": 1.0, "sparse": 0.3, "colbert": 1.0}


class Heads(torch.nn.Module):
    """sparse: Linear(hidden, 1) + ReLU; colbert: Linear(hidden, dim). The files BGE-M3 ships."""

    def __init__(self, hidden: int, colbert_dim: int | None = None):
        super().__init__()
        dim = colbert_dim or hidden
        self.sparse = torch.nn.Linear(hidden, 1)
        self.colbert = torch.nn.Linear(hidden, dim)
        with torch.no_grad():
            # Start where the untrained encoder is: every token weighs the same (a bag-of-tokens overlap
            # score), and token vectors are the states themselves (identity) or a projection of them.
            self.sparse.weight.zero_()
            self.sparse.bias.fill_(0.1)
            self.colbert.bias.zero_()
            if dim == hidden:
                self.colbert.weight.copy_(torch.eye(hidden))

    def init_projection(self, sample: torch.Tensor) -> None:
        """A colbert head narrower than the states starts as their top principal directions."""
        if self.colbert.out_features == self.colbert.in_features or len(sample) < self.colbert.out_features:
            return
        centred = sample - sample.mean(0)
        _u, _s, v = torch.linalg.svd(centred.float(), full_matrices=False)
        with torch.no_grad():
            self.colbert.weight.copy_(v[: self.colbert.out_features])


class Batch:
    """Padded states of some texts: hidden (B, T, H), token ids (B, T), mask (B, T)."""

    def __init__(self, hidden: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor):
        self.hidden, self.ids, self.mask = hidden, ids, mask


def dense_vectors(b: Batch, pooling: str) -> torch.Tensor:
    if pooling == "cls":
        v = b.hidden[:, 0]
    else:
        m = b.mask.unsqueeze(-1).to(b.hidden.dtype)
        v = (b.hidden * m).sum(1) / m.sum(1).clamp(min=1)
    return F.normalize(v, dim=-1)


def prefix_mask(b: Batch, prefixes: list[list[int]]) -> torch.Tensor:
    """(B, T) True at an instruction prefix's tokens ("query: "), which the encoder leaves out of the
    sparse and multi-vector outputs (`hsearch.encode.encoder.prefix_length`): trained the same way."""
    out = torch.zeros(b.ids.shape, dtype=torch.bool)
    for r, row in enumerate(b.ids.tolist()):
        out[r, 1:1 + prefix_length(row[:int(b.mask[r].sum())], prefixes)] = True
    return out


def sparse_weights(heads: Heads, b: Batch, specials: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
    w = torch.relu(heads.sparse(b.hidden)).squeeze(-1)
    keep = b.mask.bool() & ~torch.isin(b.ids, specials)
    if prefix is not None:
        keep &= ~prefix
    return w * keep


def sparse_scores(q_ids, q_w, d_ids, d_w) -> torch.Tensor:
    """(Q, D): sum over token ids of max-pooled query weight x max-pooled document weight."""
    vocab, inverse = torch.unique(torch.cat([q_ids.flatten(), d_ids.flatten()]), return_inverse=True)
    qi, di = inverse[: q_ids.numel()].view_as(q_ids), inverse[q_ids.numel():].view_as(d_ids)

    def pooled(idx, w):
        out = torch.zeros(idx.shape[0], len(vocab), dtype=w.dtype)
        return out.scatter_reduce(1, idx, w, reduce="amax", include_self=True)

    return pooled(qi, q_w) @ pooled(di, d_w).T


def colbert_vectors(heads: Heads, b: Batch, prefix: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    mask = b.mask[:, 1:] if prefix is None else b.mask[:, 1:] * ~prefix[:, 1:]
    return F.normalize(heads.colbert(b.hidden[:, 1:]), dim=-1), mask


def colbert_scores(q, q_mask, d, d_mask) -> torch.Tensor:
    """(Q, D) MaxSim: for each query, the mean over its tokens of the best document token. One matrix
    product for the whole batch (a loop over queries was most of a CPU training step)."""
    n_q, l_q, dim = q.shape
    n_d, l_d, _ = d.shape
    sim = (q.reshape(n_q * l_q, dim) @ d.reshape(n_d * l_d, dim).T).view(n_q, l_q, n_d, l_d)
    sim = sim + ((1 - d_mask.to(d.dtype)) * -4.0).view(1, 1, n_d, l_d)  # padding never wins a max (cosines >= -1)
    best = sim.max(-1).values  # (Q, Lq, D)
    m = q_mask.to(best.dtype).unsqueeze(-1)
    return (best * m).sum(1) / m.sum(1).clamp(min=1)


def losses(scores: dict[str, torch.Tensor], trainable: set[str], temperature: float, distill: bool,
           teacher_weights: dict[str, float] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """InfoNCE of each trainable signal (query i's positive is candidate i), and with `distill` BGE-M3's
    self-knowledge distillation: every signal also learns the teacher's distribution over candidates,
    the teacher being the weighted sum of all three scores (itself trained on the labels too).
    Returns the loss to minimise and its parts (floats) for the log."""
    w = teacher_weights or TEACHER_WEIGHTS
    target = torch.arange(next(iter(scores.values())).shape[0])
    parts = {f"nce_{s}": F.cross_entropy(scores[s] / temperature, target) for s in scores if s in trainable}
    loss = sum(parts.values())
    if distill:
        teacher = sum(w[s] * scores[s] for s in scores) / sum(w[s] for s in scores)
        parts["nce_teacher"] = F.cross_entropy(teacher / temperature, target)
        p = F.softmax(teacher.detach() / temperature, dim=-1)
        for s in scores:
            if s in trainable:
                parts[f"kd_{s}"] = -(p * F.log_softmax(scores[s] / temperature, dim=-1)).sum(-1).mean()
        loss = (loss + parts["nce_teacher"] + sum(v for k, v in parts.items() if k.startswith("kd_"))) / 2
    return loss, {k: float(v.detach()) for k, v in parts.items()}
