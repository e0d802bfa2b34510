"""Running an analysis script in a child process, under limits, with a stripped environment."""
