{{/*
What the service must be told about this release: the Lease its Role covers, the profiles file
this chart mounts, and in extender mode that it binds nothing and where the extender listens.
*/}}
{{- define "kubext.wiring" -}}
scheduler_config: /etc/kubext-profiles/scheduler.yaml
leader_election:
  namespace: {{ .Release.Namespace }}
  name: {{ .Values.schedulerName }}
{{- if eq .Values.mode "extender" }}
standalone:
  enabled: false
{{- end }}
{{- if ne (int .Values.extender.port) 8888 }}
extender:
  port: {{ .Values.extender.port }}
{{- end }}
{{- end -}}

{{/* The service's profiles: .Values.profiles, or one named schedulerName with the defaults
changed by .Values.plugins and .Values.pluginConfig. */}}
{{- define "scheduler.profiles" -}}
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
{{- if .Values.profiles }}
  {{- toYaml .Values.profiles | nindent 2 }}
{{- else }}
  - schedulerName: {{ .Values.schedulerName }}
    {{- $plugins := dict }}
    {{- range $point, $set := .Values.plugins }}
    {{- if $set }}{{ $_ := set $plugins $point $set }}{{ end }}
    {{- end }}
    {{- with $plugins }}
    plugins:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.pluginConfig }}
    pluginConfig:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end }}
{{- end -}}
