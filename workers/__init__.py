"""Event-driven scikit-learn inference workers on Apache Kafka."""

__version__ = "0.1.0"
