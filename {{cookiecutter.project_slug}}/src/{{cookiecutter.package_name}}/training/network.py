"""The network alone, without its Lightning training logic: what scoring a saved model needs.

Kept apart from `model.py` so that loading an artifact (evaluation, the gate's champion, serving)
does not pay for importing Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def build_network(in_features: int, hidden_sizes: Sequence[int], dropout: float) -> nn.Sequential:
    """An MLP that outputs one logit per row."""
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)
