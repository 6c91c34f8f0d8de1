"""Blue-green from git: the state file, a local engine (bentoml serve + nginx), Kubernetes manifests.

- `state`: bentos/deployment.yaml, validated (the desired state; changed by commits).
- `engine`: make this machine match it (start, check, switch, grace, rollback, stop).
- `k8s`: render the same state as Kubernetes manifests for Argo CD or Flux.
- `loadgen`: a bounded loopback load generator to measure a switch.

The CLI is `tools/deploy.py`.
"""

from .state import DeployError, DeploymentState, load_state

__all__ = ["DeployError", "DeploymentState", "load_state"]
