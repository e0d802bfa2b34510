"""Pilot tests: the real dashboard driven by keys, with a scripted backend and a fixed machine."""
