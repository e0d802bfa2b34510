"""nemo-tui's own Prometheus metrics: memory per host, loaded models, the recommendation,
query counters."""
