"""The ``torchssc`` command: a thin layer over library functions.

Each subcommand lives in its own module, ``torchssc/commands/<name>.py``, exposing
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when their subcommand runs, so
``torchssc --help`` stays fast.

Errors are handled here, once for every subcommand (docs/reliability.md): an error of the
kinds in :data:`USER_ERRORS` (a bad recipe key or value, a missing or corrupt file, a full
disk, ...) is printed as ONE line, ``torchssc <command>: error: <message>``, and the command
exits with status 2; Ctrl-C prints ``torchssc <command>: interrupted`` and exits with 130.
``--debug`` (before or after the subcommand) shows the Python traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, EOFError)
"""What the library raises for bad input (recipes, files, arguments) and for faults of the
machine (a full disk, a read-only folder): one line and exit status 2. Anything else is a bug
and keeps its traceback."""

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
MAX_MESSAGE = 800
"""Characters of an error message shown on its one line (longer ones are cut, with "...")."""

# name -> (module, one-line help). Add a line here to add a subcommand.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("torchssc.commands.demo", "the whole toolkit on synthetic rooms: generate, prepare, train, evaluate, render"),
    "prepare": ("torchssc.commands.prepare", "raw depthbin split -> prepared TorchSSC layout"),
    "list": ("torchssc.commands.list", "the registered models (inputs, parameters), datasets and shipped recipes"),
    "check-data": ("torchssc.commands.check_data", "check every scene of a prepared folder (files, dtypes, values, rules)"),
    "synth": ("torchssc.commands.synth", "generate procedural rooms in the raw depthbin format"),
    "train": ("torchssc.commands.train", "train a model from a YAML recipe (torchrun for several processes)"),
    "eval": ("torchssc.commands.eval", "evaluate checkpoints under a named protocol"),
    "plan": ("torchssc.commands.plan", "a recipe's parameters, FLOPs and GPU memory per batch size, before training"),
    "predict": ("torchssc.commands.predict", "complete the scene of one RGB-D frame of your own"),
    "viz": ("torchssc.commands.viz", "render volumes to PNG, mesh (PLY/GLB) and interactive HTML"),
    "weights": ("torchssc.commands.weights", "the named weights (trained models): figures, inputs, size, source"),
    "import-weights": ("torchssc.commands.import_weights",
                       "write a checkpoint of the original TorchSSC or of the DDRNet/AICNet authors as ours"),
}


DEBUG_HELP = "on an error, show the Python traceback instead of one line"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; subcommand options are added lazily in :func:`main`."""
    parser = argparse.ArgumentParser(prog="torchssc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _version() -> str:
    from torchssc import __version__

    return f"torchssc {__version__}"


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line.

    An error re-raised by a ``DataLoader`` worker carries the worker's traceback in its message;
    its last line is the original message. Other multi-line messages (YAML errors) are joined
    with spaces; an ``OSError`` shows its message and file without ``[Errno N]``. Very long messages are cut to :data:`MAX_MESSAGE` characters.
    """
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:  # "[Errno 28] ..." -> the message and the file
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Original Traceback" in text and lines:
        text = re.sub(r"^[A-Za-z_][\w.]*(Error|Exception): ", "", lines[-1])
    else:
        text = " ".join(lines)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _pop_global_debug(argv: list[str]) -> bool:
    """Remove the ``--debug`` flags given before the subcommand; True when there was one."""
    debug = False
    while argv and argv[0] == "--debug":
        argv.pop(0)
        debug = True
    return debug


def main(argv: list[str] | None = None) -> int:
    """Run ``torchssc COMMAND ...``; returns the exit status (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _pop_global_debug(argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help / version / an error and exits
        parser.print_help()
        return EXIT_USER_ERROR
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    sub = argparse.ArgumentParser(prog=f"torchssc {name}", description=COMMANDS[name][1])
    module.add_arguments(sub)
    sub.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = sub.parse_intermixed_args(argv[1:])  # overrides may come before or after options
    debug = debug or args.debug
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"torchssc {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as exc:
        if debug:
            raise
        print(f"torchssc {name}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
