"""Bring your own model: a pipeline from a trained model, an input schema and reference data
(``workers pipeline new``), checked against the model's own predictions (``workers pipeline
check``), and records from files for ``workers produce --from``."""
