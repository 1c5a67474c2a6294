"""Format-specific readers and decoders the importer plans with (GeoLife stay points, geohashes)."""
