"""Dev tools: the demo, fault drills, the benchmark and its naive baseline, synthetic data,
the bad-input catalogue and fault injection. A production worker imports none of this."""
