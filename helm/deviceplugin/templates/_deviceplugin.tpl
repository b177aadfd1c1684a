{{/* The plugin's config needs nothing from the chart. */}}
{{- define "kubext.wiring" -}}
{}
{{- end -}}
