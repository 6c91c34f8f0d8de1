"""The BentoML service and its request and response models."""

# A request with this header is a copy (the deploy engine's shadow traffic, deploy/shadow.py): the service
# answers it but leaves it out of the prediction log, so the log holds each live request once.
SHADOW_HEADER = "X-Deploy-Shadow"

# The package stage labels each bento with the bento model it serves: the bento is built before the
# registry version that names it exists, so this is what `deploy.py status` shows as its model.
BENTO_MODEL_LABEL = "bento_model"
