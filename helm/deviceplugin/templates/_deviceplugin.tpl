{{/* The plugin's config: its sockets go where the chart mounts the kubelet's dir. */}}
{{- define "kubext.wiring" -}}
device_plugin_dir: {{ .Values.devicePluginDir }}
{{- end -}}

{{/* The configured resources: config.resources, else the service's one simulated resource. */}}
{{- define "deviceplugin.resources" -}}
{{- toJson (dig "resources" (list (dict "name" "example.com/gpu")) (.Values.config | default dict)) -}}
{{- end -}}

{{/* True when a resource discovers host devices (backend generic or nvidia): /dev is mounted. */}}
{{- define "deviceplugin.needsHostDev" -}}
{{- $need := false -}}
{{- range (include "deviceplugin.resources" . | fromJsonArray) -}}
{{- if has (get . "backend" | default "simulated") (list "generic" "nvidia") -}}{{- $need = true -}}{{- end -}}
{{- end -}}
{{- if $need }}true{{ end -}}
{{- end -}}

{{/* The CDI dirs of the resources with cdi.enabled (the plugin writes its spec there), as JSON. */}}
{{- define "deviceplugin.cdiDirs" -}}
{{- $dirs := list -}}
{{- range (include "deviceplugin.resources" . | fromJsonArray) -}}
{{- $cdi := get . "cdi" | default dict -}}
{{- if get $cdi "enabled" -}}{{- $dirs = append $dirs (get $cdi "dir" | default "/var/run/cdi") -}}{{- end -}}
{{- end -}}
{{- toJson ($dirs | uniq) -}}
{{- end -}}
