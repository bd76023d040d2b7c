"""The ``torchssc`` command: a thin layer over library functions.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their subcommand runs, so
``torchssc --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Add a line here to add a subcommand.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("torchssc.demo_command", "the whole toolkit on synthetic rooms: generate, prepare, train, evaluate, render"),
    "prepare": ("torchssc.prepare.command", "raw depthbin split -> prepared TorchSSC layout"),
    "check-data": ("torchssc.data.check_command", "check every scene of a prepared folder (files, dtypes, values, rules)"),
    "synth": ("torchssc.synth.command", "generate procedural rooms in the raw depthbin format"),
    "train": ("torchssc.engine.train_command", "train a model from a YAML recipe (torchrun for several processes)"),
    "eval": ("torchssc.engine.eval_command", "evaluate checkpoints under a named protocol"),
    "predict": ("torchssc.predict.command", "complete the scene of one RGB-D frame of your own"),
    "viz": ("torchssc.viz.command", "render volumes to PNG, mesh (PLY/GLB) and interactive HTML"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; subcommand options are added lazily in :func:`main`."""
    parser = argparse.ArgumentParser(prog="torchssc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _version() -> str:
    from torchssc import __version__

    return f"torchssc {__version__}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help / version / an error and exits
        parser.print_help()
        return 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    sub = argparse.ArgumentParser(prog=f"torchssc {name}", description=COMMANDS[name][1])
    module.add_arguments(sub)
    args = sub.parse_intermixed_args(argv[1:])  # overrides may come before or after options
    return int(module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
