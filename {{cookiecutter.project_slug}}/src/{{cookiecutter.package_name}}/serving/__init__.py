"""The BentoML service and its request and response models."""
