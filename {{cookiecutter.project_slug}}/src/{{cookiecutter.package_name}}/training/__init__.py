"""Train the model: network, data module, fitted preprocessing, the artifact, the MLflow run."""
