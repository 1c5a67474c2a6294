"""TrailScope analytics: ingest, store and pure DataFrame-in/DataFrame-out analyses."""
