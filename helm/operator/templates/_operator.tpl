{{/* The operator's config needs nothing from the chart: its defaults fit any release. */}}
{{- define "kubext.wiring" -}}
{}
{{- end -}}

{{/* The ClusterKopfPeering the replicas meet in. */}}
{{- define "operator.peeringName" -}}
{{- default (include "kubext.fullname" .) .Values.peering.name -}}
{{- end -}}
