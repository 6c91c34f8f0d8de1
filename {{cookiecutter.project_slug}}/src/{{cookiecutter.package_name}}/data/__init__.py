"""Everything specific to the example dataset lives in this folder.

To use your own data, replace these three modules and keep their names:
`schema.py` (what a valid row is), `features.py` (row -> model inputs, slices)
and `generate.py` (where the raw and golden data come from).
"""

from .features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, derive_features, slice_masks
from .generate import generate_golden, generate_transactions
from .schema import ID_COLUMN, LABEL_COLUMN, TIME_COLUMN, GoldenSchema, TransactionSchema

__all__ = [
    "CATEGORICAL_FEATURES",
    "ID_COLUMN",
    "LABEL_COLUMN",
    "NUMERIC_FEATURES",
    "TIME_COLUMN",
    "GoldenSchema",
    "TransactionSchema",
    "derive_features",
    "generate_golden",
    "generate_transactions",
    "slice_masks",
]
