"""The BentoML service and its request and response models."""

# A request with this header is a copy (the deploy engine's shadow traffic, deploy/shadow.py): the service
# answers it but leaves it out of the prediction log, so the log holds each live request once.
SHADOW_HEADER = "X-Deploy-Shadow"
