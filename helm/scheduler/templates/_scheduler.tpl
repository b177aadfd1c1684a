{{/* The scheduler's config needs nothing from the chart yet (see the README of the chart's values). */}}
{{- define "kubext.wiring" -}}
{}
{{- end -}}
