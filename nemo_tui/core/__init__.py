"""Pure logic: memory, models, recommendations and optimization; no UI and no network I/O."""
