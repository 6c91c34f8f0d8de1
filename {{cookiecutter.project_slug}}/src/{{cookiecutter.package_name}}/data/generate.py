"""A seeded generator of card transactions with a rare, learnable fraud class.

Stands in for a real data source: swap `generate_transactions` for a reader of
your own (a warehouse query, a parquet export) that returns the same columns.
The structure is realistic enough to train and evaluate on: skewed amounts,
merchant mix, hour-of-day pattern, cross-border and card-not-present risk,
velocity, label noise. `drift` shifts the population to stand in for a new
data version.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .schema import COUNTRIES, MERCHANT_CATEGORIES, SLICE_COLUMN

START_TIME = pd.Timestamp("2025-01-01")
SPAN_SECONDS = 365 * 24 * 3600
CATEGORY_WEIGHTS = np.array([0.30, 0.18, 0.14, 0.08, 0.08, 0.14, 0.05, 0.03])
CATEGORY_RISK = np.array([-0.8, -0.6, -0.4, 0.4, 0.8, 0.6, 1.0, 1.2])
CATEGORY_LOG_MEAN = np.array([3.3, 3.5, 3.7, 6.0, 5.6, 4.2, 3.4, 6.3])
COUNTRY_WEIGHTS = np.array([0.40, 0.15, 0.12, 0.10, 0.08, 0.06, 0.05, 0.04])
BASE_LOGIT = -4.1
ROW_GROUP_ROWS = 262_144  # a streaming reader holds one row group per thread: keep them small


def _fraud_logit(frame: pd.DataFrame, category_index: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """The true risk function the model has to learn."""
    ratio = np.log1p(frame["amount"].to_numpy()) - np.log1p(frame["amount_avg_30d"].to_numpy())
    night = ((hour >= 0) & (hour < 5)).astype(float)
    cross_border = (frame["card_country"].to_numpy() != frame["merchant_country"].to_numpy()).astype(float)
    return (
        BASE_LOGIT
        + CATEGORY_RISK[category_index]
        + 0.9 * np.clip(ratio, -2, 4)
        + 1.4 * night
        + 1.6 * cross_border
        + 1.1 * (~frame["card_present"].to_numpy()).astype(float)
        + 0.6 * np.minimum(frame["txn_count_1h"].to_numpy(), 10)
        - 0.6 * np.log1p(frame["account_age_days"].to_numpy() / 30.0)
        + 0.25 * np.log1p(frame["distance_from_home_km"].to_numpy() / 50.0)
    )


def generate_transactions(
    n_rows: int,
    seed: int = 0,
    drift: float = 0.0,
    label_noise: float = 0.002,
    id_prefix: str = "tx",
    first_id: int = 0,
) -> pd.DataFrame:
    """`n_rows` labelled transactions; the same arguments give the same bytes.

    `drift` in [0, 1] moves spending up, towards online categories and
    cross-border use; `label_noise` flips that share of labels. Ids count up
    from `first_id`, so chunks of one file (`write_transactions`) never share one.
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be in [0, 1], got {drift}")
    # A chunk further into a file draws its own stream; the first keeps the one seed alone gives.
    rng = np.random.default_rng(seed if first_id == 0 else [seed, first_id])
    weights = CATEGORY_WEIGHTS + drift * np.array([-0.1, -0.05, -0.05, 0.0, 0.06, 0.1, 0.03, 0.01])
    category_index = rng.choice(len(MERCHANT_CATEGORIES), size=n_rows, p=weights / weights.sum())
    seconds = rng.integers(0, SPAN_SECONDS, size=n_rows)
    # Spending follows the day: few transactions at night.
    hour_shift = rng.normal(14, 4.5, size=n_rows).round().astype(int) % 24
    seconds = seconds - (seconds % 86_400) + hour_shift * 3600 + rng.integers(0, 3600, size=n_rows)
    event_time = START_TIME + pd.to_timedelta(np.sort(seconds), unit="s")
    amount = np.exp(rng.normal(CATEGORY_LOG_MEAN[category_index] + 0.3 * drift, 0.9))
    amount_avg_30d = np.exp(rng.normal(CATEGORY_LOG_MEAN[category_index], 0.5)) * rng.uniform(0.5, 1.5, n_rows)
    card_country = rng.choice(COUNTRIES, size=n_rows, p=COUNTRY_WEIGHTS)
    abroad = rng.random(n_rows) < 0.07 + 0.08 * drift
    merchant_country = np.where(abroad, rng.choice(COUNTRIES, size=n_rows), card_country)
    online = np.isin(category_index, [4, 5, 6])
    card_present = rng.random(n_rows) < np.where(online, 0.05, 0.85)
    frame = pd.DataFrame(
        {
            "transaction_id": [f"{id_prefix}_{seed}_{i:09d}" for i in range(first_id, first_id + n_rows)],
            "event_time": event_time.astype("datetime64[ns]"),
            "amount": np.clip(amount, 0.5, 50_000.0).round(2),
            "merchant_category": np.asarray(MERCHANT_CATEGORIES)[category_index],
            "card_country": card_country,
            "merchant_country": merchant_country,
            "card_present": card_present,
            "account_age_days": rng.gamma(2.0, 400.0, n_rows).astype(np.int64).clip(0, 36_500),
            "txn_count_1h": rng.poisson(0.6 + 0.6 * drift, n_rows).astype(np.int64),
            "amount_avg_30d": np.clip(amount_avg_30d, 0.0, 50_000.0).round(2),
            "distance_from_home_km": np.clip(rng.exponential(25.0, n_rows) + abroad * 800.0, 0, 20_000).round(1),
        }
    )
    hour = frame["event_time"].dt.hour.to_numpy()
    probability = 1.0 / (1.0 + np.exp(-_fraud_logit(frame, category_index, hour)))
    label = rng.random(n_rows) < probability
    flip = rng.random(n_rows) < label_noise
    frame["is_fraud"] = (label ^ flip).astype(np.int64)
    return frame


def inject_invalid_rows(frame: pd.DataFrame, share: float, seed: int = 0) -> pd.DataFrame:
    """Spoil `share` of the rows the way real feeds do, to exercise quarantine."""
    frame = frame.copy()
    rng = np.random.default_rng(seed + 7)
    n_bad = int(len(frame) * share)
    rows = rng.choice(len(frame), size=n_bad, replace=False)
    kinds = rng.integers(0, 3, size=n_bad)
    amount = frame["amount"].to_numpy(copy=True)
    amount[rows[kinds == 0]] = -amount[rows[kinds == 0]]
    frame["amount"] = amount
    category = frame["merchant_category"].to_numpy(dtype=object, copy=True)
    category[rows[kinds == 1]] = "unknown"
    frame["merchant_category"] = pd.Series(category, index=frame.index, dtype="str")
    velocity = frame["txn_count_1h"].to_numpy(copy=True)
    velocity[rows[kinds == 2]] = 99_999
    frame["txn_count_1h"] = velocity
    return frame


def write_transactions(
    path: str | Path, n_rows: int, *, seed: int = 0, invalid_share: float = 0.0, chunk_rows: int = 1_000_000
) -> None:
    """Write `n_rows` transactions to one parquet file, a chunk at a time: memory is one chunk, not the file.

    Each chunk is drawn from (seed, its first row) and its ids continue the previous chunk's, so
    ids stay unique and sorted; each chunk has `invalid_share` of its rows spoiled. The same arguments
    (chunk size included) give the same bytes. Written beside `path` and moved into place.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    writer: pq.ParquetWriter | None = None
    try:
        for first in range(0, n_rows, chunk_rows):
            frame = generate_transactions(min(chunk_rows, n_rows - first), seed=seed, first_id=first)
            spoiled = inject_invalid_rows(frame, invalid_share, seed=seed + first)
            table = pa.Table.from_pandas(spoiled, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema, compression="snappy")
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        if writer is None:  # no rows: still a file with the columns
            table = pa.Table.from_pandas(generate_transactions(0, seed=seed), preserve_index=False)
            writer = pq.ParquetWriter(partial, table.schema, compression="snappy")
            writer.write_table(table)
        writer.close()
        partial.replace(path)
    finally:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)


def generate_golden(n_sample: int = 20_000, n_hard: int = 500, seed: int = 10_000) -> pd.DataFrame:
    """The golden set: a fixed random sample plus curated hard cases, each row labelled with its slice.

    Drawn from seeds the training data never uses, so no golden row is ever trained on.
    """
    sample = generate_transactions(n_sample, seed=seed, id_prefix="golden")
    sample[SLICE_COLUMN] = "sample"
    pool = generate_transactions(n_hard * 100, seed=seed + 1, id_prefix="hard")
    hard_cases = {
        # Big-ticket purchases that are legitimate: the false-positive trap.
        "large_legit": pool[(pool["is_fraud"] == 0) & (pool["amount"] > pool["amount"].quantile(0.98))],
        # Small fraudulent purchases: card testing, easy to miss.
        "small_fraud": pool[(pool["is_fraud"] == 1) & (pool["amount"] < pool["amount"].median())],
        "cross_border": pool[pool["card_country"] != pool["merchant_country"]],
    }
    parts = [sample]
    used = np.zeros(len(pool), dtype=bool)
    for name, rows in hard_cases.items():
        # A row belongs to one slice only, so transaction ids stay unique.
        chosen = rows[~used[rows.index]].head(n_hard).copy()
        used[chosen.index] = True
        chosen[SLICE_COLUMN] = name
        parts.append(chosen)
    golden = pd.concat(parts, ignore_index=True)
    golden[SLICE_COLUMN] = golden[SLICE_COLUMN].astype("str")
    return golden


# What tests and demos call, whatever the dataset: `tools/adopt_data.py` writes a generate.py with the same two
# functions drawn from the adopted schema (data/synthetic.py).
def sample_rows(rows: int, seed: int = 0) -> pd.DataFrame:
    """`rows` labelled valid rows."""
    return generate_transactions(rows, seed=seed)


def sample_golden(rows: int, seed: int = 10_000) -> pd.DataFrame:
    """A golden set: `rows` sample rows plus hard cases (a thirtieth as many per curated slice)."""
    return generate_golden(n_sample=rows, n_hard=max(rows // 30, 1), seed=seed)
