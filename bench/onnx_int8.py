"""all-MiniLM-L6-v2 with int8 weights through ONNX Runtime's dynamic quantisation (no optimum).

The transformer of the packaged model is exported to ONNX with ``torch.onnx.export``, its
MatMul weights quantised to int8 with ``onnxruntime.quantization.quantize_dynamic``, and run
with ONNX Runtime on the CPU; mean pooling and L2 normalisation follow in numpy, as the
sentence-transformers pipeline does. The transformer and its tokenizer come from
sentence-transformers on the packaged files (meshdex's own forward pass has no ONNX export).
The files are cached under ``bench/.cache/onnx``.
Used by ``bench/bench_precision.py`` only: needs the ``int8`` extra (onnx, onnxruntime).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
from meshdex.index.embedder import EmbeddingFingerprint
from meshdex.index.embedders_local import MiniLMEmbedder, l2_normalise, packaged_model_dir

from bench.corpus import CACHE_DIR

log = logging.getLogger(__name__)

ONNX_DIR = CACHE_DIR / "onnx"
OPSET = 17


@cache
def _sentence_transformer():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(packaged_model_dir()), device="cpu", local_files_only=True)


def export_int8(fp32: MiniLMEmbedder, directory: Path = ONNX_DIR) -> Path:
    """The int8 ONNX file of ``fp32``'s transformer, exported and quantised once."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    directory.mkdir(parents=True, exist_ok=True)
    stem = fp32.fingerprint.model_hash[:16]
    plain, quantised = directory / f"{stem}-fp32.onnx", directory / f"{stem}-int8.onnx"
    if quantised.exists():
        return quantised
    class Transformer(torch.nn.Module):
        """Keyword arguments only: BertModel's positional order changes between versions."""

        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    model = _sentence_transformer()
    transformer = Transformer(model[0].auto_model).eval()
    tokens = model.tokenize(["an example sentence", "another one"])
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    axes["last_hidden_state"] = {0: "batch", 1: "tokens"}
    with torch.no_grad():
        torch.onnx.export(
            transformer, (tokens["input_ids"], tokens["attention_mask"],
                          tokens["token_type_ids"]),
            str(plain), input_names=names, output_names=["last_hidden_state"],
            dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )
    quantize_dynamic(str(plain), str(quantised), weight_type=QuantType.QInt8)
    return quantised


class OnnxInt8Embedder:
    """Embeds like ``MiniLMEmbedder`` (same tokenizer, mean pooling, unit rows),
    with the int8 ONNX transformer; its fingerprint says precision "int8"."""

    def __init__(self, fp32: MiniLMEmbedder, *, batch_size: int = 32) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        self._session = onnxruntime.InferenceSession(
            str(export_int8(fp32)), options, providers=["CPUExecutionProvider"])
        self._tokenize = _sentence_transformer().tokenize
        self._batch_size = batch_size
        base = fp32.fingerprint
        digest = hashlib.sha256(export_int8(fp32).read_bytes()).hexdigest()
        self._fingerprint = EmbeddingFingerprint(
            model_id=base.model_id, model_hash=digest, precision="int8",
            max_seq_length=base.max_seq_length, pooling=base.pooling, normalize=True,
            dim=base.dim)

    model_id = property(lambda self: self._fingerprint.model_id)
    model_hash = property(lambda self: self._fingerprint.model_hash)
    dim = property(lambda self: self._fingerprint.dim)
    fingerprint = property(lambda self: self._fingerprint)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self._batch_size):
            ids = order[start : start + self._batch_size]
            tokens = self._tokenize([texts[i] for i in ids])
            feed = {name: tokens[name].numpy().astype(np.int64)
                    for name in ("input_ids", "attention_mask", "token_type_ids")}
            (hidden,) = self._session.run(None, feed)
            mask = feed["attention_mask"][:, :, None].astype(np.float32)
            out[ids] = l2_normalise((hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1),
                                                                             1e-9))
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]
