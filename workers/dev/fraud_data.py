"""Synthetic but plausible card transactions, with a known fraud mechanism.

Fraud is likelier for amounts far above the account's 30-day average, abroad, in bursts,
for risky merchant categories, online with untrusted devices, on young accounts and far
from home. The base rate is ~2-3%, as in real card portfolios.
"""
from __future__ import annotations

from typing import Any

import numpy as np

SCHEMA = "fraud/transaction.v2.avsc"  # what generate() writes
OLD_SCHEMA = "fraud/transaction.v1.avsc"  # the previous version (no device_trust_score)

MERCHANT_CATEGORIES = ("grocery", "restaurants", "fuel", "retail", "electronics", "travel", "online_gaming", "jewelry")
MERCHANT_WEIGHTS = (0.26, 0.18, 0.12, 0.20, 0.08, 0.07, 0.05, 0.04)
RISKY_CATEGORIES = {"electronics", "online_gaming", "jewelry"}
CHANNELS = ("pos", "online", "atm")
CHANNEL_WEIGHTS = (0.55, 0.38, 0.07)


def generate(
    n: int, seed: int, *, start_ms: int = 1_760_000_000_000, span_ms: int = 0, accounts: int = 50_000
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """``n`` transactions (schema transaction.v2) and their fraud labels (0/1)."""
    rng = np.random.default_rng(seed)
    account = rng.integers(0, accounts, n)
    age = np.clip(rng.gamma(2.0, 400.0, n), 0, 15_000).astype(int)
    avg = np.round(np.exp(rng.normal(3.6, 0.7, n)), 2)
    category = rng.choice(len(MERCHANT_CATEGORIES), n, p=MERCHANT_WEIGHTS)
    channel = rng.choice(len(CHANNELS), n, p=CHANNEL_WEIGHTS)
    card_present = (channel != 1) & (rng.random(n) > 0.03)
    foreign = rng.random(n) < 0.05
    burst = rng.poisson(0.6, n)
    distance = np.round(rng.exponential(12.0, n) + foreign * rng.exponential(800.0, n), 1)
    trust = np.where(channel == 1, rng.beta(5.0, 2.0, n), rng.beta(8.0, 1.5, n))
    trust_known = rng.random(n) > 0.2
    ratio = np.exp(rng.normal(0.0, 0.6, n))

    risky = np.isin(category, [MERCHANT_CATEGORIES.index(c) for c in RISKY_CATEGORIES])
    logit = (
        -4.6
        + 1.1 * np.log(ratio)
        + 1.6 * foreign
        + 0.45 * burst
        + 1.0 * risky
        + 0.7 * (channel == 1)
        - 0.6 * card_present
        - 0.0004 * age
        + 0.4 * np.log1p(distance / 50.0)
        - 2.0 * np.where(trust_known, trust - 0.7, 0.0)
    )
    fraud = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    # Fraudsters spend more than the account usually does.
    ratio = np.where(fraud, ratio * np.exp(rng.normal(0.8, 0.5, n)), ratio)
    amount = np.round(np.clip(avg * ratio, 0.5, 50_000.0), 2)
    offsets = rng.integers(0, span_ms + 1, n) if span_ms else np.zeros(n, dtype=int)
    ids = rng.bytes(16 * n)

    events = []
    for i in range(n):
        events.append(
            {
                "event_id": ids[16 * i : 16 * i + 16].hex(),
                "account_id": f"acct-{account[i]:06d}",
                "event_time": int(start_ms + offsets[i]),
                "amount": float(amount[i]),
                "merchant_category": MERCHANT_CATEGORIES[category[i]],
                "channel": CHANNELS[channel[i]],
                "card_present": bool(card_present[i]),
                "foreign_country": bool(foreign[i]),
                "account_age_days": int(age[i]),
                "txn_count_1h": int(burst[i]),
                "avg_amount_30d": float(avg[i]),
                "distance_from_home_km": float(distance[i]),
                "device_trust_score": float(round(trust[i], 3)) if trust_known[i] else None,
            }
        )
    return events, fraud.astype(np.int8)
