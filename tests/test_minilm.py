"""meshdex's own all-MiniLM-L6-v2 forward pass against ``SentenceTransformer.encode`` on the
same packaged files, the start-up it exists for, and the models it refuses to run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from meshdex.index.embedders_local import MiniLMEmbedder, packaged_model_dir
from meshdex.index.errors import EmbedderError

pytestmark = pytest.mark.model

TEXTS = [
    "How do I read the contents of a file?",
    "",
    "   leading and trailing blanks   ",
    "tabs\tand\nnewlines\r\nand a form feed\f",
    "Ünïcödé, emoji 🐍 and 日本語のテキスト — with dashes",
    "def fib(n):\n    a, b = 0, 1\n    while a < n:\n        a, b = b, a + b",
    " ".join(f"word{i}" for i in range(600)),  # far past 256 tokens: cut like the reference
    "x" * 3000,
    "a",
]


def _sentence_transformer():
    """sentence-transformers on the same files: the pipeline the vectors must match."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(packaged_model_dir()), device="cpu", local_files_only=True)


def _reference_vectors(model, texts: list[str]) -> np.ndarray:
    return model.encode(texts, batch_size=len(texts), normalize_embeddings=True,
                        convert_to_tensor=True).float().numpy()


def test_fp32_vectors_are_sentence_transformers_vectors(real_embedder):
    reference = _sentence_transformer()
    ours = real_embedder.embed_documents(TEXTS)
    theirs = _reference_vectors(reference, TEXTS)
    np.testing.assert_allclose(ours, theirs, atol=2e-6)
    assert real_embedder.fingerprint.max_seq_length == reference.max_seq_length == 256
    assert real_embedder.dim == reference.get_embedding_dimension()


def test_a_padded_batch_gives_each_text_its_own_vector(real_embedder):
    alone = np.stack([real_embedder.embed_query(text) for text in TEXTS])
    together = real_embedder.embed_documents(TEXTS)  # one batch, padded to the longest text
    np.testing.assert_allclose(together, alone, atol=2e-6)


def test_bf16_stays_close_to_fp32_and_to_sentence_transformers_bf16(real_embedder):
    import torch

    bf16 = MiniLMEmbedder(precision="bf16").embed_documents(TEXTS)
    fp32 = real_embedder.embed_documents(TEXTS)
    theirs = _reference_vectors(_sentence_transformer().to(torch.bfloat16), TEXTS)
    assert np.sum(bf16 * fp32, axis=1).min() >= 0.996
    assert np.sum(bf16 * theirs, axis=1).min() >= 0.99


STARTUP = (
    "import sys; from meshdex.index.embedders import default_embedder; "
    "default_embedder('bf16').embed_query('a question'); "
    "print(sorted(m for m in ('sentence_transformers', 'transformers', 'sklearn', 'scipy') "
    "if m in sys.modules))"
)


def test_embedding_a_query_imports_neither_transformers_nor_scikit_learn():
    """What made every embedding process spend 10 s importing before its first vector."""
    result = subprocess.run([sys.executable, "-c", STARTUP], capture_output=True, text=True,
                            check=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == "[]"


def _model_copy(root: Path) -> Path:
    """The packaged model's files, linked into a directory a test may edit."""
    source = packaged_model_dir()
    copy = root / "model"
    for path in source.rglob("*"):
        if path.is_file():
            target = copy / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    return copy


def _rewrite_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    path.unlink()
    path.write_text(json.dumps({**data, **changes}))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: _rewrite_json(m / "config.json", hidden_act="relu"),
         "unsupported model: hidden_act is 'relu'"),
        (lambda m: _rewrite_json(m / "config.json", model_type="roberta"),
         "unsupported model: model_type is 'roberta'"),
        (lambda m: _rewrite_json(m / "1_Pooling" / "config.json", pooling_mode_mean_tokens=False,
                                 pooling_mode_cls_token=True),
         "unsupported pooling: pooling_mode_cls_token"),
        (lambda m: (m / "tokenizer.json").unlink() or (m / "tokenizer.json").write_text("{"),
         "could not read tokenizer.json"),
        (lambda m: (m / "model.safetensors").unlink()
         or (m / "model.safetensors").write_bytes(b"\x08" + bytes(64)),
         "could not read model.safetensors"),
    ],
    ids=["activation", "architecture", "pooling", "tokenizer", "weights"],
)
def test_a_model_it_cannot_run_faithfully_is_refused_by_name(tmp_path, edit, message):
    model = _model_copy(tmp_path)
    edit(model)
    with pytest.raises(EmbedderError, match="could not load the embedding model") as raised:
        MiniLMEmbedder(model_dir=model, precision="fp32")
    assert message in str(raised.value)
