{{/* The scheduler's config needs nothing from the chart yet (see the README of the chart's values). */}}
{{- define "kubext.wiring" -}}
{}
{{- end -}}

{{- define "scheduler.validate" -}}
{{- if not (has .Values.mode (list "scheduler" "extender")) -}}
{{- fail (printf "mode: %q is neither scheduler nor extender" .Values.mode) -}}
{{- end -}}
{{- end -}}
