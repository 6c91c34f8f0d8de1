"""Blue-green from git: the state file, a local engine (bentoml serve + nginx), Kubernetes manifests.

- `state`: bentos/deployment.yaml, validated (the desired state; changed by commits).
- `engine`: make this machine match it (start, check, switch, grace, rollback, stop).
- `shadow`: before a switch, mirror live traffic to the new slot and compare its answers.
- `k8s`: render the same state as Kubernetes manifests for Argo CD or Flux.

The CLI is `tools/deploy.py`.
"""

from .state import DeployError, DeploymentState, load_state

__all__ = ["DeployError", "DeploymentState", "load_state"]
