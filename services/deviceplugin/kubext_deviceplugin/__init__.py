"""kubext deviceplugin: a kubelet v1beta1 device plugin (simulated, generic and NVIDIA backends)."""
