"""Stream sources (Redis Streams; a Kafka source plugs into the same interface) and the
consumer loop."""
