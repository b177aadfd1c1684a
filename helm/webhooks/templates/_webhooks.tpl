{{/*
What the service must be told about the objects this release creates: where it runs, its
Service (for the certificate's DNS names), the TLS mode and Secret, and which objects' caBundle
it keeps current.
*/}}
{{- define "kubext.wiring" -}}
{{- $fullname := include "kubext.fullname" . -}}
namespace: {{ .Release.Namespace }}
service_name: {{ $fullname }}
tls:
  mode: {{ ternary "cert-manager" "self-managed" .Values.certManager.enabled }}
  secret_name: {{ include "webhooks.tlsSecret" . }}
  inject:
    validating_webhook_configurations: {{ include "webhooks.validatingNames" . }}
    mutating_webhook_configurations: {{ include "webhooks.mutatingNames" . }}
    custom_resource_definitions: {{ include "webhooks.crdNames" . }}
{{- if .Values.policy }}
policy:
  path: {{ include "webhooks.policyDir" . }}/policy.yaml
{{- end }}
{{- end -}}

{{/* Where .Values.policy is mounted. */}}
{{- define "webhooks.policyDir" -}}
/etc/kubext-policy
{{- end -}}

{{/* The Secret with the serving certificate (the service's own, or cert-manager's). */}}
{{- define "webhooks.tlsSecret" -}}
{{- include "kubext.fullname" . }}-tls
{{- end -}}

{{- define "webhooks.anyEnabled" -}}
{{- if or .Values.webhooks.pods.enabled .Values.webhooks.databases.enabled }}true{{ end -}}
{{- end -}}

{{/* Injection targets as JSON lists; empty where the object is not created or not ours to patch. */}}
{{- define "webhooks.validatingNames" -}}
{{- if include "webhooks.anyEnabled" . }}{{ list (include "kubext.fullname" .) | toJson }}{{ else }}[]{{ end -}}
{{- end -}}
{{- define "webhooks.mutatingNames" -}}
{{- include "webhooks.validatingNames" . -}}
{{- end -}}
{{- define "webhooks.crdNames" -}}
{{- if .Values.conversion.injectCABundle }}{{ list .Values.conversion.crdName | toJson }}{{ else }}[]{{ end -}}
{{- end -}}

{{/* The HTTPS port the service listens on: config.port, else its default 8443. */}}
{{- define "webhooks.port" -}}
{{- dig "port" 8443 (.Values.config | default dict) | int -}}
{{- end -}}

{{/* Where the cert-manager Secret is mounted: config.tls.cert_dir, else the service's default. */}}
{{- define "webhooks.certDir" -}}
{{- dig "tls" "cert_dir" "/etc/kubext-webhooks/tls" (.Values.config | default dict) -}}
{{- end -}}

{{/* The settings every webhook shares; takes (dict "root" $ "path" "/validate/pods"). */}}
{{- define "webhooks.common" -}}
{{- $root := .root -}}
clientConfig:
  {{- if $root.Values.webhooks.url }}
  url: {{ printf "%s%s" (trimSuffix "/" $root.Values.webhooks.url) .path }}
  {{- else }}
  service:
    namespace: {{ $root.Release.Namespace }}
    name: {{ include "kubext.fullname" $root }}
    path: {{ .path }}
    port: {{ $root.Values.service.port }}
  {{- end }}
failurePolicy: {{ $root.Values.webhooks.failurePolicy }}
matchPolicy: Equivalent
sideEffects: None
timeoutSeconds: {{ $root.Values.webhooks.timeoutSeconds }}
admissionReviewVersions: [v1]
namespaceSelector:
  {{- with $root.Values.webhooks.namespaceSelector.matchLabels }}
  matchLabels:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  matchExpressions:
    # Never kube-system, never the namespace the webhooks themselves run in.
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- concat (list "kube-system" $root.Release.Namespace) $root.Values.webhooks.excludeNamespaces | uniq | sortAlpha | toYaml | nindent 8 }}
    {{- with $root.Values.webhooks.namespaceSelector.matchExpressions }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- with $root.Values.webhooks.objectSelector }}
objectSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Metadata of both webhook configurations. */}}
{{- define "webhooks.configurationMeta" -}}
name: {{ include "kubext.fullname" . }}
labels:
  {{- include "kubext.labels" . | nindent 2 }}
{{- if .Values.certManager.enabled }}
annotations:
  # cert-manager's cainjector copies the Certificate's CA into every webhook's caBundle.
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "kubext.fullname" . }}
{{- end }}
{{- end -}}
