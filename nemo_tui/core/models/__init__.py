"""Which model answers: the catalog, its metadata and memory estimates, the query's complexity,
the recommendation, and which loaded models to keep or evict."""
