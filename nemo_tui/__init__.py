"""nemo-tui: run local LLMs from the terminal without running out of memory.

Importing the package loads nothing but the version, so the CLI stays fast and no UI is pulled in.
The version lives here (not in installed metadata) because reading metadata costs ~30 ms of
start-up, a fifth of the `status` command's budget.
"""

__version__ = "0.1.0"
