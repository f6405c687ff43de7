"""Regenerate sparkplug_b_pb2.py from the vendored Tahu sparkplug_b.proto.

    python -m btms_gateway.plugins.mqtt.sparkplug.generate          # rewrite the file
    python -m btms_gateway.plugins.mqtt.sparkplug.generate --check  # exit 1 if it differs

Uses the protoc on PATH (Debian's protobuf-compiler) and insists on the
version the committed file was made with: another protoc writes other
(equally valid) code, and the point of the check is that the file is exactly
protoc's output, not edited by hand. Its code needs protobuf >= 4.21 at run
time and carries no version check of its own, so it works with the 4.x to
7.x runtimes pip may install.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "vendor" / "sparkplug_b.proto"
GENERATED = HERE / "sparkplug_b_pb2.py"
PROTOC_VERSION = "libprotoc 3.21.12"


class GenerateError(RuntimeError):
    pass


def generate() -> bytes:
    """protoc's Python output for the vendored .proto."""
    protoc = shutil.which("protoc")
    if protoc is None:
        raise GenerateError("protoc not found: apt-get install protobuf-compiler")
    version = subprocess.run([protoc, "--version"], capture_output=True, text=True).stdout.strip()
    if version != PROTOC_VERSION:
        raise GenerateError(f"protoc {PROTOC_VERSION!r} needed, found {version!r}")
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [protoc, f"--proto_path={PROTO.parent}", f"--python_out={out}", PROTO.name],
            check=True,
        )
        return (Path(out) / GENERATED.name).read_bytes()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    try:
        fresh = generate()
    except GenerateError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.check:
        if fresh != GENERATED.read_bytes():
            print(f"{GENERATED} is not protoc's output for {PROTO.name}", file=sys.stderr)
            return 1
        print(f"{GENERATED.name}: protoc's output ({PROTOC_VERSION})")
        return 0
    GENERATED.write_bytes(fresh)
    print(f"wrote {GENERATED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
