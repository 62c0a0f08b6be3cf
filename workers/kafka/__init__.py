"""The Kafka adapter layer: every import of a Kafka client library lives here (and in the dev tools)."""
