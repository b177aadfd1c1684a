"""The scheduling framework, pure: extension points, per-cycle state, the node snapshot, pod
requests as kube-scheduler computes them, profiles and the runtime that drives plugins.

No I/O and no Kubernetes client here (an import contract holds it): pods and nodes are the
plain JSON objects the API server serves.
"""
