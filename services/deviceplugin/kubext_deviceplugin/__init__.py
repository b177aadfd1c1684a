"""kubext deviceplugin: a skeleton (config, logs, health) of the planned kubelet v1beta1 device plugin."""
