"""The prediction log's contract: its settings and what one line holds.

Serving writes the log (its hook is `predictions.PredictionLog`) and the monitor reads it; both take
this contract from here, downward, so neither package imports the other's upper layer.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..data.rows import COLUMN_TYPES
from ..data.schema import ID_COLUMN

MONITOR_NAME = "predictions"
FEATURE_COLUMNS = tuple(name for name in COLUMN_TYPES if name != ID_COLUMN)  # what the model reads
SCORE_COLUMN = "score"
MODEL_COLUMN = "model"
TIME_COLUMN = "timestamp"
LOG_GLOB = "*/data/data.*.log*"  # under the log dir, any monitor name


class PredictionLogSettings(BaseModel):
    """conf/serve's `prediction_log`: whether scored rows are logged, where, and for how many days."""

    model_config = ConfigDict(extra="forbid", strict=True)
    enabled: bool
    dir: str = Field(min_length=1)
    keep_days: int = Field(ge=1)
