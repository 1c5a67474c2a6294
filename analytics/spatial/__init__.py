"""Where behaviour happens: density grids, zones, flows between zones, mobility paths."""
