"""Learn the rotation shipped for the packaged model (``model_rotations``) from other text.

``python -m meshdex.index.train_model_rotation [--docs /usr/share/doc]`` reads the plain-text
and gzip files under ``--docs`` (Debian's package documentation by default: varied technical
prose, and none of it the benchmark's Python docs, which are left out), cuts them into passages
as ``meshdex add`` does, embeds a seeded sample of them with the packaged model at the default
precision and learns an OPQ rotation for the default code layout on it, then writes
``index/rotations/<model hash>.rot``. The file is committed: a rotation is data the product
ships, and a bundle names the one it used by digest.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from meshdex.index import model_rotations, rotation_layout
from meshdex.index.chunking import ChunkingParams, chunk_text
from meshdex.index.codes import ProductQuantizer
from meshdex.index.embedder import Embedder
from meshdex.index.embedders import EmbedderSpec, default_embedder
from meshdex.index.length_batches import embed_in_length_order
from meshdex.index.params import BuildParams
from tqdm import tqdm

log = logging.getLogger(__name__)

DEFAULT_DOCS = Path("/usr/share/doc")
DEFAULT_EXCLUDE = ("python3", "changelog", "copyright", "NEWS")
MAX_FILE_BYTES = 2_000_000
MIN_PASSAGE_CHARS = 200


def passages_under(root: Path, exclude: tuple[str, ...]) -> Iterator[str]:
    """Passages of every readable UTF-8 file under ``root`` whose path names none of
    ``exclude`` (case-insensitive), in path order."""
    chunking = ChunkingParams()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        if any(word.lower() in str(path).lower() for word in exclude):
            continue
        text = _read_text(path)
        if text is None:
            continue
        for passage in chunk_text(text, chunking):
            if len(passage) >= MIN_PASSAGE_CHARS:
                yield passage


def _read_text(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8")
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError):
        return None
    return None if "\x00" in text else text


def embedded_sample(passages: list[str], size: int, embedder: Embedder) -> np.ndarray:
    """The seeded sample of ``size`` passages the shipped rotation is learnt on, embedded."""
    rng = np.random.default_rng(BuildParams().seed)
    chosen = [passages[i] for i in np.sort(rng.choice(len(passages), size, replace=False))]
    with tqdm(total=len(chosen), unit="passage", desc="embedding") as bar:
        return embed_in_length_order(embedder, chosen, lambda done, total: bar.update(done - bar.n))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS,
                        help="folder of text to learn from (default: %(default)s)")
    parser.add_argument("--exclude", nargs="*", default=list(DEFAULT_EXCLUDE),
                        help="skip paths naming any of these (default: %(default)s)")
    parser.add_argument("--sample", type=int, default=BuildParams().pq_train_sample,
                        help="passages to embed and learn on (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    passages = list(passages_under(args.docs, tuple(args.exclude)))
    if len(passages) < args.sample:
        log.error("%s holds %d passages, fewer than the %d to learn on",
                  args.docs, len(passages), args.sample)
        return 1
    embedder = default_embedder(EmbedderSpec().precision)
    vectors = embedded_sample(passages, args.sample, embedder)
    params = BuildParams()
    quantizer = ProductQuantizer.train(
        vectors, subvectors=params.pq_subvectors, bits=params.pq_bits, sample=args.sample,
        seed=params.seed, rotation_iterations=params.pq_rotation_iterations)
    target = model_rotations.path_for(embedder.fingerprint.model_hash)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(rotation_layout.to_bytes(quantizer.rotation))
    log.info("learnt on %d of %d passages under %s: wrote %s",
             len(vectors), len(passages), args.docs, target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
