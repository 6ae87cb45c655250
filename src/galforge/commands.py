"""What every ``galforge`` subcommand shares: the common options and the handler type.

A study's ``cli`` module registers its subcommands with :func:`add_command`; it
never imports :mod:`galforge.cli`, which sits above every study and loops over
the study registry (:mod:`galforge.studies`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Handler", "add_command"]

#: A subcommand's body: the parsed arguments and the resolved configuration.
Handler = Callable[[argparse.Namespace, dict[str, Any]], None]


def add_command(
    sub: argparse._SubParsersAction, name: str, handler: Handler, help: str,
    options: Mapping[str, str] | None = None,
) -> argparse.ArgumentParser:
    """Register a subcommand with the shared ``--config``, ``--threads`` and logging options.

    ``options`` maps each of the command's own options (``"maps"`` → ``--maps``) to its
    help text. Each is a required string (an input or output path, mostly); a name ending
    in ``+`` takes one or more values and one ending in ``?`` is optional (default None).
    """
    p = sub.add_parser(name, help=help, description=help)
    for opt, text in (options or {}).items():
        flag = "--" + opt.rstrip("+?")
        if opt.endswith("+"):
            p.add_argument(flag, nargs="+", required=True, help=text)
        elif opt.endswith("?"):
            p.add_argument(flag, default=None, help=text)
        else:
            p.add_argument(flag, required=True, help=text)
    p.add_argument(
        "--config",
        default="config.yaml",
        help="inline JSON (as the workflow passes it) or a YAML/JSON config file (default: config.yaml)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument(
        "--threads", type=int, default=None,
        help="CPU threads for numerical libraries (torch); the workflow passes the rule's threads",
    )
    p.set_defaults(handler=handler)
    return p
