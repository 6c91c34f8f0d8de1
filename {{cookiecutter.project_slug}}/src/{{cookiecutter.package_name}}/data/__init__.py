"""The dataset's modules and the engine that reads them.

The dataset's place (with conf/dataset/): `schema.py` (what a valid row is, and the roles of its
columns), `features.py` (row -> model inputs, slices) and `generate.py` (where sample rows come from:
`sample_rows`, `sample_golden`). `tools/adopt_data.py` writes all three for a table of your own.
The engine beside them (`rows`, `tabular`, `synthetic`, `validation`, `spark`) never names a column.

The names below load on first use: the validate stage imports `data.validation`
without paying for pandas and Pandera, which these modules import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ below loads them
    from .features import CATEGORICAL_FEATURES as CATEGORICAL_FEATURES
    from .features import NUMERIC_FEATURES as NUMERIC_FEATURES
    from .features import derive_features as derive_features
    from .features import slice_masks as slice_masks
    from .generate import sample_golden as sample_golden
    from .generate import sample_rows as sample_rows
    from .schema import ID_COLUMN as ID_COLUMN
    from .schema import LABEL_COLUMN as LABEL_COLUMN
    from .schema import TIME_COLUMN as TIME_COLUMN
    from .schema import GoldenSchema as GoldenSchema
    from .schema import RowSchema as RowSchema

_HOMES = {
    ".features": ("CATEGORICAL_FEATURES", "NUMERIC_FEATURES", "derive_features", "slice_masks"),
    ".generate": ("sample_golden", "sample_rows"),
    ".schema": ("ID_COLUMN", "LABEL_COLUMN", "TIME_COLUMN", "GoldenSchema", "RowSchema"),
}

__all__ = sorted(name for names in _HOMES.values() for name in names)


def __getattr__(name: str) -> Any:
    for module, names in _HOMES.items():
        if name in names:
            return getattr(importlib.import_module(module, __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
