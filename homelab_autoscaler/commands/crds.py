"""`homelab-autoscaler crds`: print, write or check the CustomResourceDefinitions generated from schemas/.

Printing is for `homelab-autoscaler crds | kubectl apply -f -`; `--write DIR` regenerates the committed
manifests; `--check DIR` fails (exit 1, with a diff) when the committed files are stale, for CI.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from schemas import crds


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "crds",
        help="print the Group and Node CRDs (or write/check them in a directory)",
        description="Print the Group and Node CustomResourceDefinitions generated from the schemas.",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--write",
        metavar="DIR",
        type=Path,
        help="write one <crd name>.yaml per CRD into DIR instead of printing",
    )
    target.add_argument(
        "--check",
        metavar="DIR",
        type=Path,
        help="exit 1 and show a diff if the files in DIR are not up to date",
    )


def run(args: argparse.Namespace) -> int:
    if args.write is not None:
        return write(args.write)
    if args.check is not None:
        return check(args.check)
    sys.stdout.write(crds.render_crds_yaml())
    return 0


def write(directory: Path) -> int:
    """Write every CRD file into `directory` (created if missing); returns the exit status."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in crds.render_crd_files().items():
        (directory / name).write_text(text, encoding="utf-8")
        print(f"wrote {directory / name}")
    return 0


def check(directory: Path) -> int:
    """0 when every CRD file in `directory` equals the generated text, else 1 after printing a diff."""
    stale = 0
    for name, expected in crds.render_crd_files().items():
        path = directory / name
        actual = path.read_text(encoding="utf-8") if path.exists() else ""
        if actual != expected:
            stale += 1
            sys.stdout.writelines(
                difflib.unified_diff(
                    actual.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    str(path),
                    "generated",
                )
            )
    if stale:
        print(f"{stale} CRD file(s) out of date; run `{crds.REGENERATE_COMMAND}`", file=sys.stderr)
        return 1
    return 0
