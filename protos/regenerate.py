"""Regenerates the committed Python code for the protos in this folder, or checks that it is current.

The generated modules are committed so that installing the operator needs no code generator; this script
is the only way they change. It runs `grpc_tools.protoc` from the repository root with `-I .`, which
makes generated imports read `from protos import ...`. With `--check` it generates into a temporary
directory instead and exits with status 1 if anything differs from the committed files (CI runs this).

protoc types the messages (`--pyi_out`) but leaves the gRPC module untyped, which `mypy --strict` rejects
at every call into it; so this script also writes `<name>_pb2_grpc.pyi` from the service descriptor.

Usage:  python protos/regenerate.py [--check]
"""

from __future__ import annotations

import argparse
import filecmp
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Final

from google.protobuf import descriptor_pb2

REPOSITORY_ROOT: Final = Path(__file__).resolve().parent.parent
PROTO_FOLDER: Final = "protos"

# Which generators each proto needs: only externalgrpc defines a service, so only it gets gRPC stubs.
SERVICE_PROTOS: Final = ("externalgrpc.proto",)
MESSAGE_ONLY_PROTOS: Final = ("k8s_node.proto",)


def expected_outputs() -> list[str]:
    """Paths (relative to the repository root) of every file this script generates."""
    outputs: list[str] = []
    for proto in SERVICE_PROTOS + MESSAGE_ONLY_PROTOS:
        stem = f"{PROTO_FOLDER}/{proto.removesuffix('.proto')}"
        outputs += [f"{stem}_pb2.py", f"{stem}_pb2.pyi"]
        if proto in SERVICE_PROTOS:
            outputs += [f"{stem}_pb2_grpc.py", f"{stem}_pb2_grpc.pyi"]
    return sorted(outputs)


def _run_protoc(
    output_root: Path, protos: Sequence[str], with_grpc: bool, descriptor_set: Path | None = None
) -> None:
    # The well-known types (duration, timestamp, any) ship inside grpc_tools, not on any system path.
    well_known_types = resources.files("grpc_tools") / "_proto"
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        ".",
        "-I",
        str(well_known_types),
        f"--python_out={output_root}",
        f"--pyi_out={output_root}",
    ]
    if with_grpc:
        command.append(f"--grpc_python_out={output_root}")
    if descriptor_set is not None:
        command.append(f"--descriptor_set_out={descriptor_set}")
    command += [f"{PROTO_FOLDER}/{proto}" for proto in protos]
    subprocess.run(command, cwd=REPOSITORY_ROOT, check=True)


def generate(output_root: Path) -> None:
    """Writes every generated file under output_root (which mirrors the repository root)."""
    (output_root / PROTO_FOLDER).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="protos-descriptors-") as scratch:
        descriptor_set_path = Path(scratch) / "services.binpb"
        _run_protoc(output_root, SERVICE_PROTOS, with_grpc=True, descriptor_set=descriptor_set_path)
        descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set_path.read_bytes())
    for proto_file in descriptor_set.file:
        stub_path = output_root / proto_file.name.replace(".proto", "_pb2_grpc.pyi")
        stub_path.write_text(render_grpc_stub(proto_file), encoding="utf-8")
    _run_protoc(output_root, MESSAGE_ONLY_PROTOS, with_grpc=False)


def render_grpc_stub(proto_file: descriptor_pb2.FileDescriptorProto) -> str:
    """The typing stub of the gRPC module protoc generates for proto_file (unary RPCs only)."""
    module = proto_file.name.removesuffix(".proto").replace("/", ".")
    package, _, messages_module = f"{module}_pb2".rpartition(".")
    lines = [
        f'"""Typing stub for {messages_module}_grpc, written by protos/regenerate.py. DO NOT EDIT."""',
        "",
        "from typing import Any",
        "",
        "import grpc",
        "",
        f"from {package} import {messages_module}",
    ]

    def message_type(full_name: str) -> str:
        # Every message our services use lives in the same file, so the short name is enough.
        return f"{messages_module}.{full_name.rsplit('.', 1)[-1]}"

    for service in proto_file.service:
        for method in service.method:
            if method.client_streaming or method.server_streaming:
                raise SystemExit(f"{service.name}.{method.name}: only unary RPCs are supported by this stub")
        # One blank line between top-level definitions: the stub-file convention ruff's isort expects.
        lines += ["", f"class {service.name}Stub:"]
        lines += ["    def __init__(self, channel: grpc.Channel) -> None: ..."]
        lines += [f"    {method.name}: Any" for method in service.method]
        lines += ["", f"class {service.name}Servicer:"]
        for method in service.method:
            lines += [
                f"    def {method.name}(",
                f"        self, request: {message_type(method.input_type)}, context: grpc.ServicerContext",
                f"    ) -> {message_type(method.output_type)}: ...",
            ]
        lines += [
            "",
            f"def add_{service.name}Servicer_to_server(servicer: {service.name}Servicer, server: grpc.Server)"
            " -> None: ...",
        ]
    return "\n".join(lines) + "\n"


def stale_files() -> list[str]:
    """Generated files that are missing, differ from a fresh generation, or no longer have a source."""
    expected = expected_outputs()
    committed = {path.relative_to(REPOSITORY_ROOT).as_posix() for path in _committed_generated_files()}
    with tempfile.TemporaryDirectory(prefix="protos-check-") as scratch:
        fresh_root = Path(scratch)
        generate(fresh_root)
        differing = [
            relative
            for relative in expected
            if relative not in committed
            or not filecmp.cmp(fresh_root / relative, REPOSITORY_ROOT / relative, shallow=False)
        ]
    return differing + sorted(committed - set(expected))


def _committed_generated_files() -> list[Path]:
    folder = REPOSITORY_ROOT / PROTO_FOLDER
    return [path for pattern in ("*_pb2.py*", "*_pb2_grpc.py*") for path in folder.glob(pattern)]


def main(arguments: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if the committed code is not current"
    )
    options = parser.parse_args(arguments)
    if not options.check:
        generate(REPOSITORY_ROOT)
        print("regenerated: " + ", ".join(expected_outputs()))
        return 0
    stale = stale_files()
    if stale:
        print("generated code is stale, run `python protos/regenerate.py`: " + ", ".join(stale))
        return 1
    print("generated code is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
