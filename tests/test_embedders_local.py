"""The packaged all-MiniLM-L6-v2: file-based model hash, real semantics, bf16, batching."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from meshdex.index.embedders import default_embedder
from meshdex.index.embedders_local import (
    MiniLMEmbedder,
    hashed_model_files,
    model_dir_hash,
    packaged_model_dir,
)
from meshdex.index.errors import InvalidArgument

HASH_IN_SUBPROCESS = (
    "from meshdex.index.embedders_local import model_dir_hash, packaged_model_dir; "
    "print(model_dir_hash(packaged_model_dir()))"
)


def test_model_hash_is_stable_across_processes(real_embedder):
    hashes = {
        subprocess.run(
            [sys.executable, "-c", HASH_IN_SUBPROCESS], check=True, capture_output=True, text=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert hashes == {real_embedder.model_hash}
    assert real_embedder.fingerprint.model_hash == real_embedder.model_hash


def test_hashed_files_are_weights_tokenizer_and_configs():
    names = {path.as_posix() for path in hashed_model_files(packaged_model_dir())}
    assert {"model.safetensors", "tokenizer.json", "vocab.txt", "config.json",
            "1_Pooling/config.json"} <= names
    assert "README.md" not in names


def _tiny_model_dir(root: Path) -> Path:
    model = root / "model"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    (model / "config.json").write_text('{"hidden_size": 384}')
    (model / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    (model / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (model / "README.md").write_text("model card")
    return model


def _flip_weight_byte(model: Path) -> None:
    data = bytearray((model / "model.safetensors").read_bytes())
    data[100] ^= 1
    (model / "model.safetensors").write_bytes(bytes(data))


def _edit_readme(model: Path) -> None:
    (model / "README.md").write_text("a different model card")


def _rename_vocab(model: Path) -> None:
    (model / "vocab.txt").rename(model / "vocab2.txt")


def _move_bytes_between_files(model: Path) -> None:
    # Same concatenated bytes, different file boundary: length-prefixing must catch it.
    (model / "config.json").write_text('{"hidden_size": 38')
    (model / "1_Pooling" / "config.json").write_text('4}{"pooling_mode_mean_tokens": true}')


@pytest.mark.parametrize(
    ("change", "hash_changes"),
    [
        (_flip_weight_byte, True),
        (_rename_vocab, True),
        (_move_bytes_between_files, True),
        (_edit_readme, False),
        (lambda model: shutil.copystat(model / "vocab.txt", model / "config.json"), False),
    ],
    ids=["weight byte", "file renamed", "bytes moved between files", "readme edited", "mtime"],
)
def test_model_hash_follows_file_contents_not_metadata(tmp_path, change, hash_changes):
    original = model_dir_hash(_tiny_model_dir(tmp_path / "a"))
    changed_dir = _tiny_model_dir(tmp_path / "b")
    assert model_dir_hash(changed_dir) == original  # same bytes elsewhere: same hash
    change(changed_dir)
    model_dir_hash.cache_clear()
    assert (model_dir_hash(changed_dir) != original) is hash_changes


@pytest.mark.parametrize(
    ("query", "related", "unrelated"),
    [
        ("How do I read the contents of a file?",
         "Call f.read() on an open file object to get its whole text as a string.",
         "The Eiffel Tower is the tallest building in Paris."),
        ("What is a tuple?",
         "A tuple is an immutable sequence of values separated by commas.",
         "Preheat the oven to 200 degrees before baking the bread."),
        ("How do I catch an exception?",
         "Use a try statement with an except clause to handle errors.",
         "Elephants live in herds led by the oldest female."),
    ],
)
def test_real_model_ranks_a_paraphrase_above_an_unrelated_text(
    real_embedder, query, related, unrelated
):
    documents = real_embedder.embed_documents([unrelated, related])
    scores = documents @ real_embedder.embed_query(query)
    assert scores[1] > scores[0] + 0.2


def test_bf16_agrees_with_fp32(real_embedder):
    tutorial = files("meshdex.node") / "sample" / "python-tutorial"
    texts = [(tutorial / name).read_text()[:1200] for name in ("classes.rst", "errors.rst")]
    texts += [
        "Python is an easy to learn, powerful programming language.",
        "def fib(n):\n    a, b = 0, 1\n    while a < n:\n        a, b = b, a + b",
    ]
    bf16 = default_embedder("bf16")
    assert bf16.fingerprint.precision == "bf16"
    assert bf16.fingerprint != real_embedder.fingerprint
    assert bf16.model_hash == real_embedder.model_hash
    cosines = np.sum(bf16.embed_documents(texts) * real_embedder.embed_documents(texts), axis=1)
    assert cosines.min() >= 0.99


def test_one_model_call_per_batch_and_input_order_kept(real_embedder):
    texts = [f"passage number {i} " + "word " * (i % 7) for i in range(70)]
    calls_before = real_embedder.model_calls
    forward = real_embedder.embed_documents(texts)
    assert real_embedder.model_calls - calls_before == 3  # 32 + 32 + 6
    backward = real_embedder.embed_documents(texts[::-1])
    np.testing.assert_allclose(backward[::-1], forward, atol=1e-5)


def test_default_embedder_is_loaded_once_per_process(real_embedder):
    assert default_embedder() is real_embedder
    assert default_embedder("fp32") is default_embedder("fp32")


@pytest.mark.parametrize(
    ("texts", "message"),
    [("one string", "not one string"), (["ok", 3], "text #1 is int")],
)
def test_non_text_input_is_refused(real_embedder, texts, message):
    with pytest.raises(InvalidArgument, match=message):
        real_embedder.embed_documents(texts)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"precision": "int8"}, "precision"), ({"batch_size": 0}, "batch_size")],
)
def test_bad_constructor_arguments_are_refused(kwargs, message):
    with pytest.raises(InvalidArgument, match=message):
        MiniLMEmbedder(**kwargs)
