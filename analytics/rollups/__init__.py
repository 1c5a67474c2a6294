"""Per-dataset summary tables: read-only lookup, the explicit build after an import,
stored defaults.

The layer above the analyses: it calls them to build its tables; analyses never import it."""
