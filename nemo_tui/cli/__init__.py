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
    from nemo_tui.cli.output import note
    from nemo_tui.cli.parser import build_parser

    parser = build_parser()
    args = parser.parse_args(argv)
    _replace_what_the_terminal_cannot_show()
    # Error texts can quote model servers (their messages, model names, health details), so they
    # go out through `note`, stripped of terminal controls.
    try:
        status: int = args.handler(args)
    except (ConfigError, UsageError) as exc:
        note(f"nemo-tui: {exc.one_line()}")
        return EXIT_USAGE
    except NemoError as exc:
        note(f"nemo-tui: {exc.title}: {exc.one_line()}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("nemo-tui: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); nothing more to say.
        return EXIT_FAILURE
    return status


def _replace_what_the_terminal_cannot_show() -> None:
    """On a terminal whose encoding is not UTF-8 (a Latin-1 locale), a character it lacks is
    shown as `?` instead of ending the command with UnicodeEncodeError mid-answer."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and (stream.encoding or "").lower().replace("-", "") != "utf8":
            reconfigure(errors="replace")
