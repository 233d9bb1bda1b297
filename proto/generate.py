"""Generate the Python code for every ``proto/meshdex/v1/*.proto`` — the one script that does.

Usage::

    python proto/generate.py          # regenerate in place
    python proto/generate.py --check  # exit 1 if the checked-in code is stale (CI/tests)

protoc names imports after the proto package path (``from meshdex.v1 import x_pb2``); the
installed package is ``meshdex.proto.meshdex.v1``, so imports are rewritten to that.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
PACKAGE_DIR = PROTO_ROOT / "meshdex" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
IMPORT_PATTERN = re.compile(r"^from meshdex\.v1 import", re.MULTILINE)


def generate(out_root: Path) -> list[Path]:
    """Compile every .proto into ``out_root/meshdex/v1`` and return the generated files."""
    protos = sorted(PACKAGE_DIR.glob("*.proto"))
    if not protos:
        return []
    include = Path(protoc.__file__).resolve().parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    generated = sorted(
        p for p in (out_root / "meshdex" / "v1").iterdir() if p.name.endswith(GENERATED_SUFFIXES)
    )
    for path in generated:
        text = IMPORT_PATTERN.sub("from meshdex.proto.meshdex.v1 import", path.read_text())
        path.write_text(text)
    return generated


def stale_files() -> list[str]:
    """Names of generated files that differ from (or are missing beside) their .proto."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        fresh_names = {p.name for p in fresh}
        stale = [p.name for p in fresh if not (PACKAGE_DIR / p.name).exists()
                 or not filecmp.cmp(p, PACKAGE_DIR / p.name, shallow=False)]
        leftovers = [p.name for p in PACKAGE_DIR.iterdir()
                     if p.name.endswith(GENERATED_SUFFIXES) and p.name not in fresh_names]
    return sorted(stale + leftovers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        if stale:
            print("stale generated protobuf code: " + ", ".join(stale)
                  + " — run: python proto/generate.py", file=sys.stderr)
            return 1
        return 0
    generate(PROTO_ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
