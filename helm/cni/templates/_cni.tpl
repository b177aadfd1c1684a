{{/* The cni daemon's config needs nothing from the chart. */}}
{{- define "kubext.wiring" -}}
{}
{{- end -}}

{{/* The network config list written to the host (JSON). */}}
{{- define "cni.conflist" -}}
{{- $plugin := merge (dict "type" .Values.cni.pluginName) (deepCopy .Values.cni.plugin) -}}
{{- $list := dict "cniVersion" .Values.cni.cniVersion "name" .Values.cni.networkName "plugins" (prepend .Values.cni.chain $plugin) -}}
{{- toPrettyJson $list -}}
{{- end -}}
