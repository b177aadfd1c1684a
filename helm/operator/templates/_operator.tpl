{{/*
What the operator must be told about this release: the Lease it elects its leader in, which is
the one its Role covers (the release namespace, named after the release).
*/}}
{{- define "kubext.wiring" -}}
leader_election:
  namespace: {{ .Release.Namespace }}
  name: {{ include "kubext.fullname" . }}
{{- end -}}
