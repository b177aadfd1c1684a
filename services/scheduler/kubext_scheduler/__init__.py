"""kubext scheduler: the scheduling framework with its plugins, served as a kube-scheduler extender (no standalone scheduling yet)."""
