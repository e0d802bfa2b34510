"""Text on its way out of nemo-tui: to a terminal (stripped of control sequences) or a file."""
