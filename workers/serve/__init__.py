"""Synchronous scoring over HTTP: the Open Inference Protocol on the same core (``workers serve``)."""
