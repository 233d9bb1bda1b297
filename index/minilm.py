"""all-MiniLM-L6-v2's forward pass in plain torch, from the model's own files.

Why not ``SentenceTransformer``: importing sentence-transformers (and with it transformers,
torch's dynamo, sympy, scipy and scikit-learn) took 10-11 s of every process that embeds, so
an embedded ``meshdex search`` of a 300-passage collection took 12 s where the search itself
took milliseconds. This module needs only torch, ``tokenizers`` and ``safetensors``
(about 3 s to import) and computes the same vectors: the packaged model is a 6-layer BERT
followed by mean pooling, exactly what ``modules.json`` names (Transformer, Pooling, Normalize),
and ``tests/test_minilm.py`` holds it to ``SentenceTransformer.encode`` on the same files (fp32
cosine 1.0 to six places).

Only that architecture is accepted: any other ``config.json`` (another model type, activation
or position embedding) or pooling is refused with an ``EmbedderError`` instead of being run
wrongly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from meshdex.index.errors import EmbedderError

_REQUIRED_CONFIG = {"model_type": "bert", "hidden_act": "gelu",
                    "position_embedding_type": "absolute"}
_MODULES = ("sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
            "sentence_transformers.models.Normalize")


@dataclass(frozen=True)
class BertShape:
    """The numbers of ``config.json`` the forward pass needs."""

    hidden: int
    heads: int
    layers: int
    layer_norm_eps: float
    max_positions: int

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BertShape:
        wrong = [f"{key} is {config.get(key)!r}, not {want!r}"
                 for key, want in _REQUIRED_CONFIG.items() if config.get(key, want) != want]
        if wrong:
            raise EmbedderError(f"unsupported model: {'; '.join(wrong)}", recoverable=False)
        return cls(hidden=int(config["hidden_size"]), heads=int(config["num_attention_heads"]),
                   layers=int(config["num_hidden_layers"]),
                   layer_norm_eps=float(config["layer_norm_eps"]),
                   max_positions=int(config["max_position_embeddings"]))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise EmbedderError(f"could not read {path.name}: {error}", path=path,
                            recoverable=False) from error


def _foreign_load(load: Any, path: Path) -> Any:
    """``load(path)`` of ``tokenizers`` or ``safetensors``, whose errors are bare ``Exception``
    subclasses (raised from Rust), as an ``EmbedderError`` naming the file."""
    try:
        return load(str(path))
    except Exception as error:  # noqa: BLE001 - the libraries raise nothing narrower
        raise EmbedderError(f"could not read {path.name}: {error}", path=path,
                            recoverable=False) from error


def _check_pipeline(model_dir: Path) -> None:
    """Transformer, mean pooling, normalisation: the only sentence-transformers pipeline run."""
    modules = tuple(module.get("type") for module in _read_json(model_dir / "modules.json"))
    if modules != _MODULES:
        raise EmbedderError(f"unsupported model pipeline: {', '.join(map(str, modules))}",
                            path=model_dir, recoverable=False)
    pooling = _read_json(model_dir / "1_Pooling" / "config.json")
    enabled = sorted(key for key, on in pooling.items() if key.startswith("pooling_mode_") and on)
    if enabled != ["pooling_mode_mean_tokens"]:
        raise EmbedderError(f"unsupported pooling: {', '.join(enabled) or 'none'}",
                            path=model_dir, recoverable=False)


class MiniLM:
    """The BERT encoder and mean pooling of a sentence-transformers model directory.

    ``encode`` returns the pooled, not yet normalised, float32 vectors of a batch; texts are
    tokenised with the model's ``tokenizer.json``, cut at ``max_seq_length`` tokens and padded
    to the batch's longest, as sentence-transformers does. ``precision`` "bf16" casts every
    weight to bfloat16, as ``SentenceTransformer.to(torch.bfloat16)`` does. Not thread-safe:
    the embedder serialises calls.
    """

    pooling = "mean"  # the only pooling ``_check_pipeline`` lets through

    def __init__(self, model_dir: Path, *, precision: str) -> None:
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        _check_pipeline(model_dir)
        self._shape = BertShape.from_config(_read_json(model_dir / "config.json"))
        settings = _read_json(model_dir / "sentence_bert_config.json")
        if settings.get("do_lower_case"):
            raise EmbedderError("unsupported model: do_lower_case in sentence_bert_config.json",
                                path=model_dir, recoverable=False)
        self.max_seq_length = min(int(settings["max_seq_length"]), self._shape.max_positions)
        self._tokenizer = _foreign_load(Tokenizer.from_file, model_dir / "tokenizer.json")
        self._tokenizer.enable_truncation(max_length=self.max_seq_length)
        padding = self._tokenizer.padding or {}
        self._tokenizer.enable_padding(pad_id=padding.get("pad_id", 0),
                                       pad_token=padding.get("pad_token", "[PAD]"))
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        weights = _foreign_load(load_file, model_dir / "model.safetensors")
        self._weights = {name: tensor.to(dtype) if tensor.is_floating_point() else tensor
                         for name, tensor in weights.items()}
        self.dim = self._shape.hidden
        self._layers = [self._layer_weights(layer) for layer in range(self._shape.layers)]

    def _weight(self, name: str):
        try:
            return self._weights[name]
        except KeyError:
            raise EmbedderError(f"the model's weights lack {name}", recoverable=False) from None

    def _layer_weights(self, layer: int) -> dict[str, Any]:
        prefix = f"encoder.layer.{layer}."
        names = ("attention.self.query", "attention.self.key", "attention.self.value",
                 "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
                 "output.dense", "output.LayerNorm")
        return {name: (self._weight(f"{prefix}{name}.weight"), self._weight(f"{prefix}{name}.bias"))
                for name in names}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Mean-pooled token states of ``texts``: shape ``(len(texts), dim)``, float32."""
        import torch
        import torch.nn.functional as F

        encodings = self._tokenizer.encode_batch(list(texts))
        ids = torch.tensor([encoding.ids for encoding in encodings], dtype=torch.long)
        types = torch.tensor([encoding.type_ids for encoding in encodings], dtype=torch.long)
        mask = torch.tensor([encoding.attention_mask for encoding in encodings], dtype=torch.long)
        batch, length = ids.shape
        with torch.inference_mode():
            x = (self._weight("embeddings.word_embeddings.weight")[ids]
                 + self._weight("embeddings.position_embeddings.weight")[:length]
                 + self._weight("embeddings.token_type_embeddings.weight")[types])
            x = F.layer_norm(x, (self.dim,), self._weight("embeddings.LayerNorm.weight"),
                             self._weight("embeddings.LayerNorm.bias"),
                             self._shape.layer_norm_eps)
            padded = torch.zeros(batch, 1, 1, length, dtype=x.dtype).masked_fill(
                mask[:, None, None, :] == 0, torch.finfo(x.dtype).min)
            for weights in self._layers:
                x = self._layer(x, weights, padded)
            kept = mask.unsqueeze(-1).to(x.dtype)
            pooled = (x * kept).sum(dim=1) / kept.sum(dim=1).clamp(min=1e-9)
            return pooled.float().numpy()

    def _layer(self, x, weights: dict[str, Any], padded):
        """One transformer layer: self-attention and the feed-forward block, post-norm."""
        import torch.nn.functional as F

        shape = self._shape
        batch, length, _ = x.shape

        def heads(name: str):
            return (F.linear(x, *weights[name]).view(batch, length, shape.heads, -1)
                    .transpose(1, 2))

        attended = F.scaled_dot_product_attention(
            heads("attention.self.query"), heads("attention.self.key"),
            heads("attention.self.value"), attn_mask=padded)
        attended = attended.transpose(1, 2).reshape(batch, length, shape.hidden)
        x = F.layer_norm(F.linear(attended, *weights["attention.output.dense"]) + x,
                         (shape.hidden,), *weights["attention.output.LayerNorm"],
                         shape.layer_norm_eps)
        inner = F.gelu(F.linear(x, *weights["intermediate.dense"]))
        return F.layer_norm(F.linear(inner, *weights["output.dense"]) + x, (shape.hidden,),
                            *weights["output.LayerNorm"], shape.layer_norm_eps)
