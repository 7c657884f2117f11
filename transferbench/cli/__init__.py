"""The `transferbench` command: one module per subcommand, each adding its parser and the one
function it calls (``set_defaults(func=...)``); ``main`` turns a UserError into one line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from transferbench import __version__
from transferbench.cli import (bench, collect, demo, import_caffe, import_weights, pack, plan, plot, probe, splits, status,
                               submit, task, train)
from transferbench.errors import UserError, file_error

DESCRIPTION = """\
transferbench measures how transferable each layer's features are in deep networks
(Yosinski et al. 2014) and extends the study with grown networks (Wang et al. 2017).

The whole study:  transferbench plan yosinski2014 && transferbench submit jobs/yosinski2014
                  transferbench status jobs/yosinski2014, then collect and plot
On this machine:  transferbench demo   (every step on built-in data, minutes on a CPU)
Each command has its own --help, with examples.
"""

# The order of the subcommands in --help: the pipeline's.
COMMANDS = (splits, demo, plan, pack, submit, status, collect, import_caffe, import_weights, plot, train, probe, bench, task)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (tables, aligned lists, commands set off by two spaces), except that
    a paragraph written as one long line of prose is wrapped to the terminal like any other help text."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        paragraphs = []
        for paragraph in text.split("\n\n"):
            if "\n" not in paragraph.strip() and "  " not in paragraph.strip() and len(paragraph) > width:
                paragraph = textwrap.fill(paragraph.strip(), width, initial_indent=indent, subsequent_indent=indent)
            paragraphs.append(paragraph)
        return super()._fill_text("\n\n".join(paragraphs), width, indent)



class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors end in one line that says what to fix, as every other
    error of transferbench does (argparse prints the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"transferbench: error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="transferbench", description=DESCRIPTION, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"transferbench {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add(commands, _Formatter)
    return parser


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """Warnings as one line a user reads, not Python's source-line dump."""
    return f"transferbench: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    warnings.formatwarning = _warning_line
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except UserError as exc:
        print(f"transferbench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `transferbench plan ... | head`: the reader is gone, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return 0
    except OSError as exc:  # the file system: a full disk, a quota, a read-only folder, a permission
        print(f"transferbench: error: {file_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("transferbench: interrupted; run the same command again to go on (finished networks are kept, stopped "
              "ones resume from their checkpoints)", file=sys.stderr)
        return 130
