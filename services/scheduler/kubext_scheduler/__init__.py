"""kubext scheduler: scheduling framework with plugins, as its own scheduler and as a kube-scheduler extender."""
