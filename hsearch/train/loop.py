"""`hsearch train`: fit the sparse and multi-vector heads of an encoder (BGE-M3's recipe), save a
BGE-M3-format model folder (the base model's files plus `sparse_linear.pt` and `colbert_linear.pt`)
that `load_encoder` and every hsearch command accept as --model.

    from hsearch.train import TrainConfig, train
    train("e5-small", "./e5-heads", TrainConfig(), beir=["../shared/datasets/qmsum:train"], pairs_from=["./docs"])

Steps: load pairs (data.py); encode every text once (states.py, frozen backbone) or live (full
fine-tuning); mine hard negatives with BM25 (tantivy) and with the dense signal; train on
length-grouped batches with in-batch and hard negatives (heads.py); checkpoint every
`checkpoint_every` steps into `<out>.work/` and resume from there; write the model folder and a
model card (`training.json`).
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hsearch.encode.loader import FUSION_FILE
from hsearch.errors import InputError
from hsearch.storage.atomic import write_json_atomic

from .data import TrainingData, load_training_data
from .fusion_choice import MIN_QUERIES, choose_fusion
from .heads import SIGNALS, Batch, Heads, colbert_scores, colbert_vectors, dense_vectors, losses, prefix_mask, \
    sparse_scores, sparse_weights
from .states import StateCache

log = logging.getLogger("hsearch")
MODEL_FILES = ("config.json", "hsearch_model.json", "sentence_bert_config.json", "modules.json",
               "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "sentencepiece.bpe.model",
               "vocab.txt", "model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class TrainConfig:
    colbert_dim: int | None = None  # None: the hidden size (starts as the identity: untrained MaxSim)
    epochs: int = 1
    lr: float = 1e-3  # heads; full fine-tuning uses `backbone_lr` for the transformer
    backbone_lr: float = 1e-5
    full: bool = False  # fine-tune the transformer too (meant for a GPU); default: frozen, states cached
    temperature: float = 0.05
    distill: bool = True  # BGE-M3's self-knowledge distillation; False: each head alone on the labels
    hard_negatives: int = 3  # per pair, mined from BM25's and the dense signal's top 30
    max_length: int = 512
    batch_tokens: int = 16384  # a batch holds at most this many document tokens: long texts, fewer pairs
    max_batch: int = 32
    checkpoint_every: int = 200  # steps
    seed: int = 0
    limit: int | None = None  # at most this many pairs per source (a seeded sample)
    fresh: bool = False  # start from untrained heads even when the model has trained ones (default: go on from them)

    def __post_init__(self):
        if self.epochs < 1 or self.max_batch < 2 or self.hard_negatives < 0 or self.temperature <= 0:
            raise InputError("epochs >= 1, max_batch >= 2, hard_negatives >= 0 and temperature > 0, please")


def train(model: str, out: str | Path, config: TrainConfig = TrainConfig(), beir=(), pairs_from=(),
          progress: bool = False, resume: bool = True, max_steps: int | None = None) -> dict:
    """Train and save; returns the model card. `max_steps` stops early (tests, smoke runs)."""
    from hsearch.encode import load_encoder
    from hsearch.encode.loader import transformer_fingerprint

    out = Path(out).expanduser()
    work = out.with_name(out.name + ".work")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty; choose a new --out folder")
    data = load_training_data(list(beir), list(pairs_from), config.limit, config.seed)
    encoder = load_encoder(model)
    torch.manual_seed(config.seed)
    texts, q_row, d_row = _texts(data)
    if config.full:
        states = LiveStates(encoder, texts, config.max_length)
    else:
        states = StateCache.build(encoder, texts, min(config.max_length, encoder.spec.max_length), work / "states",
                                  progress)
    heads, start = _initial_heads(encoder, config)
    if start == "untrained" and not config.full and heads.colbert.out_features != heads.colbert.in_features:
        heads.init_projection(torch.from_numpy(np.asarray(states.states[:: max(1, len(states.states) // 20000)],
                                                          np.float32)))
    negatives = mine_negatives(data, encoder, states, q_row, d_row, config)
    batches = length_batches(data, states, d_row, config)
    params = [{"params": heads.parameters(), "lr": config.lr}]
    if config.full:
        params.append({"params": encoder.model.parameters(), "lr": config.backbone_lr})
        encoder.model.train()
        # Keeping every layer's activations for a batch of `batch_tokens` tokens needs more memory than a
        # 24 GB machine has (e5-small was OOM-killed there); recompute them during backward instead.
        encoder.model.activation_checkpointing_enable()
    optim = torch.optim.AdamW(params, weight_decay=0.0)
    step, history = _resume(work / "checkpoint.pt", heads, optim, encoder if config.full else None) \
        if resume else (0, [])
    tokens = (torch.tensor(encoder._special_ids, dtype=torch.long), encoder._prefixes)  # not content
    positives = data.positives()
    trainable = {"sparse", "colbert"} | ({"dense"} if config.full else set())
    total = len(batches) * config.epochs if max_steps is None else min(max_steps, len(batches) * config.epochs)
    bar = _bar(progress, total, step)
    while step < total:
        epoch, i = divmod(step, len(batches))
        order = list(range(len(batches)))
        random.Random(config.seed + epoch).shuffle(order)  # the same order when resumed
        pairs = batches[order[i]]
        loss, parts = _step(pairs, data, positives, states, heads, q_row, d_row, negatives, tokens,
                            encoder.spec.pooling, trainable, config)
        optim.zero_grad()
        loss.backward()
        optim.step()
        step += 1
        history.append({"step": step, "loss": float(loss.detach()), **parts})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
        if step % config.checkpoint_every == 0 or step == total:
            _checkpoint(work / "checkpoint.pt", step, heads, optim, history, encoder if config.full else None)
    if bar is not None:
        bar.close()
    card = {"base_model": encoder.spec.name, "base_fingerprint": transformer_fingerprint(encoder),
            "start_fingerprint": encoder.spec.fingerprint, "recipe": asdict(config),
            "start": start, "data": data.sources, "pairs": len(data.pairs), "held_out_pairs": len(data.held), "documents": len(data.pool), "steps": step,
            "loss_first_last": [history[0] if history else None, history[-1] if history else None],
            "command": " ".join(["hsearch train", f"--model {model}", *(f"--beir {b}" for b in beir),
                                 *(f"--pairs {p}" for p in pairs_from), *_flags(config), f"--out {out}"])}
    save_model(encoder, heads, out, card)
    fusion = choose_fusion(out, data.held, data.held_pool, config.seed, encoder.spec.fusion_weights) if step else None
    card["fusion"] = ({k: fusion[k] for k in ("weights", "weights_minmax", "chosen_on")} if fusion else
                      f"not chosen: {len(data.held)} held-out pairs, {MIN_QUERIES} queries needed (the planner's "
                      "weights apply); a source of 200 pairs or more, or --limit below its size, leaves enough")
    if fusion:
        write_json_atomic(out / FUSION_FILE, fusion)
    write_json_atomic(out / "training.json", json.loads(json.dumps(card, default=str)))  # with what was chosen
    return card


def _initial_heads(encoder, config: TrainConfig) -> tuple[Heads, str]:
    """The model's own trained heads when it has them (adapting shipped heads to a corpus goes on from
    them), else - or with `fresh` - heads that behave like the untrained encoder. Returns (heads, start)."""
    hidden = int(encoder.model.config.hidden_size)
    has = encoder.sparse_linear is not None and encoder.colbert_linear is not None
    if config.fresh or not has or (config.colbert_dim not in (None, encoder.colbert_dim)):
        return Heads(hidden, config.colbert_dim), "untrained"
    heads = Heads(hidden, encoder.colbert_dim)
    with torch.no_grad():
        heads.sparse.load_state_dict({k: v.float().cpu() for k, v in encoder.sparse_linear.state_dict().items()})
        heads.colbert.load_state_dict({k: v.float().cpu() for k, v in encoder.colbert_linear.state_dict().items()})
    return heads, f"the trained heads of {encoder.spec.name}"


def _flags(config: TrainConfig) -> list[str]:
    """The command-line options that give `config` (those that differ from the defaults)."""
    default, out = asdict(TrainConfig()), []
    for key, value in asdict(config).items():
        if value == default[key]:
            continue
        if isinstance(value, bool):
            out.append({"distill": "--no-distill", "full": "--full", "fresh": "--fresh-heads"}.get(
                key, f"--{key.replace('_', '-')}"))
        else:
            out.append(f"--{key.replace('_', '-')} {value}")
    return out


def _texts(data: TrainingData):
    """Every distinct text once: queries (with the query prefix) and pool documents."""
    texts, q_row, d_row = [], {}, {}
    for p in data.pairs:
        if p.query not in q_row:
            q_row[p.query] = len(texts)
            texts.append((p.query, True))
    for key, text in data.pool.items():
        d_row[key] = len(texts)
        texts.append((text, False))
    return texts, q_row, d_row


def mine_negatives(data: TrainingData, encoder, states, q_row, d_row, config: TrainConfig) -> list[list[str]]:
    """Per pair, `hard_negatives` documents of its source that BM25 or the dense signal rank high (top 30)
    but that are not positives of the query, drawn alternately from the two lists, seeded."""
    if config.hard_negatives == 0:
        return [[] for _ in data.pairs]
    from hsearch.index.bm25 import BM25Index

    positives = data.positives()
    rng = random.Random(config.seed)
    out = []
    by_source: dict[str, list[str]] = {}
    for key in data.pool:
        by_source.setdefault(key.split("/", 1)[0], []).append(key)
    with tempfile.TemporaryDirectory(prefix="hsearch-train-bm25-") as tmp:
        bm25, dense = {}, {}
        queries = list(q_row)  # every query's dense vector, pooled once
        q_dense = dict(zip(queries, _dense_of(states, [q_row[q] for q in queries], encoder.spec.pooling)))
        for source, keys in by_source.items():
            idx = BM25Index(Path(tmp) / f"s{len(bm25)}", "default")
            idx.add(np.arange(len(keys)), [data.pool[k] for k in keys])
            idx.commit()
            bm25[source] = idx
            dense[source] = _dense_of(states, [d_row[k] for k in keys], encoder.spec.pooling)
        for p in data.pairs:
            keys = by_source[p.source]
            mine = positives[(p.source, p.query)]
            ids, _s = bm25[p.source].search(p.query, 30)
            lexical = [keys[i] for i in ids if keys[i] not in mine]
            semantic = [keys[i] for i in _top(dense[p.source] @ q_dense[p.query], 30) if keys[i] not in mine]
            picked: list[str] = []
            for pool in (lexical, semantic) * config.hard_negatives:
                choices = [k for k in pool if k not in picked]
                if choices and len(picked) < config.hard_negatives:
                    picked.append(rng.choice(choices))
            out.append(picked)
    return out


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first (a partition, not a sort of the whole pool)."""
    if len(scores) > k:
        part = np.argpartition(-scores, k)[:k]
        return part[np.argsort(-scores[part], kind="stable")]
    return np.argsort(-scores, kind="stable")


def _dense_of(states, rows: list[int], pooling: str) -> np.ndarray:
    out = []
    with torch.no_grad():
        for s in range(0, len(rows), 64):
            out.append(dense_vectors(states.batch(rows[s:s + 64]), pooling).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def length_batches(data: TrainingData, states, d_row, config: TrainConfig) -> list[list[int]]:
    """Pairs grouped by the length of their document: long and short never share a batch, and a batch of
    long documents holds fewer pairs (at most `batch_tokens` document tokens, negatives included)."""
    order = sorted(range(len(data.pairs)), key=lambda i: (states.length(d_row[data.pairs[i].doc]), i))
    batches, cur, widest = [], [], 0
    per_pair = 1 + config.hard_negatives
    for i in order:
        n = states.length(d_row[data.pairs[i].doc])
        fits = max(widest, n) * per_pair * (len(cur) + 1) <= config.batch_tokens
        if cur and (len(cur) >= config.max_batch or not fits):
            batches.append(cur)
            cur, widest = [], 0
        cur.append(i)
        widest = max(widest, n)
    if cur:
        batches.append(cur)
    return [b for b in batches if len(b) >= 2] or batches  # one pair alone has no in-batch negatives


def _step(pairs, data, positives, states, heads, q_row, d_row, negatives, tokens, pooling, trainable, config):
    qs = [data.pairs[i] for i in pairs]
    docs = [p.doc for p in qs] + [n for i in pairs for n in negatives[i]]
    q, d = states.batch([q_row[p.query] for p in qs]), states.batch([d_row[k] for k in docs])
    scores = {"dense": dense_vectors(q, pooling) @ dense_vectors(d, pooling).T}
    special, prefixes = tokens
    q_pre, d_pre = prefix_mask(q, prefixes), prefix_mask(d, prefixes)
    scores["sparse"] = sparse_scores(q.ids, sparse_weights(heads, q, special, q_pre),
                                     d.ids, sparse_weights(heads, d, special, d_pre))
    scores["colbert"] = colbert_scores(*colbert_vectors(heads, q, q_pre), *colbert_vectors(heads, d, d_pre))
    # another candidate that is also a positive of this query (a duplicate document) is no negative
    false_neg = torch.tensor([[j != r and docs[j] in positives[(p.source, p.query)] for j in range(len(docs))]
                              for r, p in enumerate(qs)])
    scores = {s: x.masked_fill(false_neg, -1e4 * config.temperature) for s, x in scores.items() if s in SIGNALS}
    return losses(scores, trainable, config.temperature, config.distill)


class LiveStates:
    """Full fine-tuning: states computed by the (trainable) transformer at every step."""

    def __init__(self, encoder, texts, max_length: int):
        spec = encoder.spec
        self.encoder = encoder
        self.ids, _ = encoder.tokenize([(spec.query_prefix if q else spec.document_prefix) + t for t, q in texts],
                                       min(max_length, spec.max_length))

    def length(self, row: int) -> int:
        return len(self.ids[row])

    def batch(self, rows: list[int]) -> Batch:
        enc = self.encoder
        width = max(len(self.ids[r]) for r in rows)
        ids = torch.full((len(rows), width), enc.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, : len(self.ids[r])] = torch.tensor(self.ids[r])
            mask[j, : len(self.ids[r])] = 1
        extra = {"token_type_ids": torch.zeros_like(ids)} if enc._needs_token_types else {}
        hidden = enc.model(input_ids=ids.to(enc.device), attention_mask=mask.to(enc.device), **extra).last_hidden_state
        return Batch(hidden.float().cpu(), ids, mask)


def _checkpoint(path: Path, step, heads, optim, history, encoder=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"step": step, "heads": heads.state_dict(), "optim": optim.state_dict(),
             "history": json.dumps(history)}
    if encoder is not None:
        state["backbone"] = encoder.model.state_dict()
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # a run killed while saving keeps the previous checkpoint


def _resume(path: Path, heads, optim, encoder=None):
    if not path.exists():
        return 0, []
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and numbers only
    heads.load_state_dict(state["heads"])
    optim.load_state_dict(state["optim"])
    if encoder is not None and "backbone" in state:
        encoder.model.load_state_dict(state["backbone"])
    log.warning("resuming %s at step %d", path, state["step"])
    return int(state["step"]), json.loads(state["history"])


def save_model(encoder, heads: Heads, out: Path, card: dict) -> None:
    """The base model's files, the two BGE-M3 head files and the model card, written to a temporary
    folder renamed into place at the end."""
    src = Path(encoder.spec.extra.get("folder", ""))
    if not (src / "config.json").exists():
        raise InputError(f"cannot find the files of {encoder.spec.name} to copy (looked in {src})")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {"model.safetensors", "pytorch_model.bin"}
    for name in MODEL_FILES:
        # full fine-tuning writes its own weights below (never through a link to the base model's file)
        if (src / name).exists() and not (card["recipe"]["full"] and name in weights):
            if name not in weights:  # small files are copied: hsearch_model.json is rewritten below, and a
                shutil.copy2(src / name, tmp / name)  # write through a hard link would change the base model
                continue
            try:  # weights are read-only inputs: a hard link saves a copy of hundreds of MB
                os.link(src / name, tmp / name)
            except OSError:
                shutil.copy2(src / name, tmp / name)
    if card["recipe"]["full"]:
        encoder.model.save_pretrained(str(tmp))
    torch.save({k: v.detach().cpu().clone() for k, v in heads.sparse.state_dict().items()}, tmp / "sparse_linear.pt")
    torch.save({k: v.detach().cpu().clone() for k, v in heads.colbert.state_dict().items()}, tmp / "colbert_linear.pt")
    info = json.loads((tmp / "hsearch_model.json").read_text()) if (tmp / "hsearch_model.json").exists() else {}
    spec = encoder.spec
    info.update({"name": f"{spec.name}+heads", "pooling": spec.pooling, "query_prefix": spec.query_prefix,
                 "document_prefix": spec.document_prefix, "max_length": spec.max_length,
                 "source": f"hsearch train from {spec.name} ({spec.fingerprint})"})
    (tmp / "hsearch_model.json").write_text(json.dumps(info, indent=1))
    (tmp / "training.json").write_text(json.dumps(card, indent=1, default=str))
    if out.exists():
        out.rmdir()  # empty (checked at the start)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)


def _bar(enabled: bool, total: int, done: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="training", unit="step")
