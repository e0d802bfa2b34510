"""`nemo-tui` with no command: open the dashboard.

Textual is imported here, inside the command, so the other commands never pay for it.
"""

from __future__ import annotations

import argparse

from nemo_tui.cli.context import make_context


def run_dashboard(args: argparse.Namespace) -> int:
    """Build the engine from the config and run the dashboard until the user quits.

    `--theme NAME` is used now and remembered in the config file's `ui.theme`.

    Raises:
        ConfigError: the config file is missing or invalid.
        UsageError: a `--simulate-*` size cannot be parsed.
    """
    from nemo_tui.engine import Engine
    from nemo_tui.ui.app import create_app

    ctx = make_context(args)
    engine = Engine(ctx.config, sampler=ctx.sampler, catalog=ctx.catalog)
    app = create_app(ctx.config, engine, config_path=ctx.config_path, theme=args.theme)
    app.run()
    return app.return_code or 0
