"""kubext audit: best-practice checks for Kubernetes extension components, on rendered manifests
or a live cluster."""
