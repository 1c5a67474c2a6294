"""Presentational builders: tidy data in, Dash components and figures out (no data access),
plus every component id (``ids``)."""
