"""The pure core: decode, validate, build features, score, encode. No Kafka imports here."""
