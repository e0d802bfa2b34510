"""Snapshot tests of the dashboard's screens at fixed sizes, on a fixed machine."""
