"""The deliberately bad model versions the rollout tests use (they live in ``workers.dev.bad_models``
so that a worker process, and the rollout demo, can load them)."""
from workers.dev.bad_models import AMOUNT, Misbehaving, write_bad_version

__all__ = ["AMOUNT", "Misbehaving", "write_bad_version"]
