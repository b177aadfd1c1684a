"""kubext deviceplugin: kubelet device plugin (v1beta1) over gRPC."""
