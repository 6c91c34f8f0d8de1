"""Judge a model on the golden set: metrics overall and per slice, plots, behavioural checks."""
