"""The `nemo-tui` command: parses arguments, loads config, runs a subcommand or the dashboard.

Nothing here imports textual until the dashboard is actually started, so `--help`, `--version`
and the scripting subcommands stay fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from nemo_tui.errors import ConfigError, NemoError, UsageError

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the process exit status."""
    from nemo_tui.cli.parser import build_parser

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except (ConfigError, UsageError) as exc:
        print(f"nemo-tui: {exc.one_line()}", file=sys.stderr)
        return EXIT_USAGE
    except NemoError as exc:
        print(f"nemo-tui: {exc.title}: {exc.one_line()}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("nemo-tui: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); nothing more to say.
        return EXIT_FAILURE
    return status
