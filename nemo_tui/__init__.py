"""nemo-tui: run local LLMs from the terminal without running out of memory.

Importing the package loads nothing but the version, so the CLI stays fast and no UI is pulled in.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nemo-tui")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
