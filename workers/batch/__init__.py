"""Batch scoring of files: the same core as the stream worker (``workers score``)."""
