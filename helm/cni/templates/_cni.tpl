{{/*
What the daemon must be told about this node layout: where to install the launcher (the host's
CNI bin dir, mounted at the same path) and which interpreter the launcher's shebang names.
*/}}
{{- define "kubext.wiring" -}}
cni_bin_dir: {{ .Values.cni.binDir }}
plugin_python: {{ .Values.cni.hostPython }}
{{- end -}}

{{/* The launcher's name in the bin dir, and the "type" in the network config (fixed by the service). */}}
{{- define "cni.pluginType" -}}
kubext-bridge
{{- end -}}

{{/* The host directory of the daemon's socket: dirname of config.socket_path. */}}
{{- define "cni.socketDir" -}}
{{- dir (dig "socket_path" "/run/kubext-cni/plugin.sock" (.Values.config | default dict)) -}}
{{- end -}}

{{/* The network config list written to the host (JSON). */}}
{{- define "cni.conflist" -}}
{{- $plugin := merge (dict "type" (include "cni.pluginType" .)) (deepCopy .Values.cni.plugin) -}}
{{- $list := dict "cniVersion" .Values.cni.cniVersion "name" .Values.cni.networkName "plugins" (prepend .Values.cni.chain $plugin) -}}
{{- toPrettyJson $list -}}
{{- end -}}
