"""corpusforge data pipelines: Beam jobs and the pure text functions they call (no Dagster imports)."""
