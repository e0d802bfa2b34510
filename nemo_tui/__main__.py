"""`python -m nemo_tui` runs the command-line interface."""

from nemo_tui.cli import main

raise SystemExit(main())
