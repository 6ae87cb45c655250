"""The ``galforge`` command line: one subcommand per workflow rule.

Every subcommand takes ``--config`` (inline JSON as the workflow passes it, or
the path of a YAML file), resolves and validates it, and writes its outputs
atomically. Run ``galforge <command> --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from galforge import __version__
from galforge.archives.cli import register as archive_commands
from galforge.commands import add_command
from galforge.config import ConfigError, config_hash, parse_settings, resolve_config
from galforge.io import InputError
from galforge.studies import REGISTRY


def _setup_logging(verbose: bool) -> None:
    from galforge.archives.download import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # third-party INFO chatter (matplotlib's PDF font subsetting logs ~1,300 fontTools
    # lines per figure job) stays out of the rule logs unless --verbose
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


#: Libraries whose INFO messages are not shown in the rule logs (only with ``--verbose``).
QUIET_LOGGERS: tuple[str, ...] = ("fontTools", "matplotlib", "PIL", "h5py", "numba")


def _config_check(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    import yaml

    print(f"# config hash {config_hash(cfg)}")
    print(yaml.safe_dump(cfg, sort_keys=False), end="")


def _set_threads(n: int) -> None:
    """Hold the numerical libraries to ``n`` threads (read by torch and BLAS when they load)."""
    import os

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(max(1, n))
    if "torch" in sys.modules:  # pragma: no cover - imported early by a caller
        sys.modules["torch"].set_num_threads(max(1, n))


def _schema(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.config import load_schema, write_schema

    if args.out:
        write_schema(args.out)
    else:
        import yaml

        print(yaml.safe_dump(load_schema(), sort_keys=False, allow_unicode=True), end="")


def build_parser() -> argparse.ArgumentParser:
    """The ``galforge`` parser: the shared commands, then each registered study's."""
    parser = argparse.ArgumentParser(prog="galforge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"galforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_command(sub, "config-check", _config_check, "validate a configuration and print it resolved")
    p = add_command(sub, "schema", _schema,
                    "print the configuration's JSON schema (or write it with --out)")
    p.add_argument("--out", default=None,
                   help="write it here (workflow/schemas/config.schema.yaml)")
    archive_commands(sub)  # downloads that several studies share
    for entry in REGISTRY:
        entry.register_commands(sub)
    return parser


#: A switch for tests of retries (tests/test_slurm.py): ``<command>:<marker file>`` makes that
#: command fail once, before it reads anything, while the marker file does not exist (it is
#: created then), so the next attempt of the same job succeeds.
FAIL_ONCE_ENV = "GALFORGE_TEST_FAIL_ONCE"
#: Exit status of that deliberate failure (EX_TEMPFAIL: "try again later").
FAIL_ONCE_STATUS = 75


def _fail_once(command: str) -> bool:
    """True (and the marker written) when :data:`FAIL_ONCE_ENV` asks ``command`` to fail now."""
    import os
    from pathlib import Path

    spec = os.environ.get(FAIL_ONCE_ENV, "")
    name, sep, marker = spec.partition(":")
    if not sep or name != command or not marker or Path(marker).exists():
        return False
    Path(marker).write_text(f"{command} failed once on purpose ({FAIL_ONCE_ENV})\n")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "verbose", False))
    if _fail_once(args.command):
        print(f"galforge {args.command}: failing once on purpose ({FAIL_ONCE_ENV} is set)",
              file=sys.stderr)
        return FAIL_ONCE_STATUS
    if getattr(args, "threads", None):
        _set_threads(args.threads)
    from galforge.archives.download import DownloadError, redact
    from galforge.archives.sdss import SDSSQueryError

    try:
        cfg = resolve_config(parse_settings(args.config))
        args.handler(args, cfg)
    except (ConfigError, InputError, DownloadError, SDSSQueryError, ConnectionError) as exc:
        # one clear line for errors of input, configuration or archive access
        print(redact(f"galforge {args.command}: error: {exc}"), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
