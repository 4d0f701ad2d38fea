"""python -m benchmarks <subcommand> [options]: runs one benchmark subcommand."""

from __future__ import annotations

import importlib
import sys

from . import SUBCOMMANDS


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: python -m benchmarks <subcommand> [options]", "", "subcommands:"]
    lines += [f"  {name:{width}s}  {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    lines += ["", "python -m benchmarks <subcommand> --help: its options"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] not in SUBCOMMANDS:
        print(f"unknown subcommand {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f".{SUBCOMMANDS[argv[0]][0]}", __package__)
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
