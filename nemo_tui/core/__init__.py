"""Pure logic, no UI and no network I/O, grouped the way a query flows through it:
`memory` (how much is free), `models` (which model answers), `prompt` (what it reads), then
`reports` (what the engine tells about it) and `text` (text leaving nemo-tui)."""
