{{- /*
Helpers shared by every kubext chart, which depends on this library chart. They are called with
the chart's own context, so .Chart and .Values are the calling chart's; what differs per chart
(the "kubext.wiring" hook included) lives in that chart's templates/_<chart>.tpl.
*/ -}}

{{/* The chart name, or .Values.nameOverride. */}}
{{- define "kubext.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The release-qualified name every object of the release is named after: .Values.fullnameOverride,
else <release>-<chart> (just <release> when it already contains the chart name). Cluster-scoped
objects carry it too, so two releases never fight over a name.
*/}}
{{- define "kubext.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* <chart>-<version>, the helm.sh/chart label. */}}
{{- define "kubext.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels that select the release's pods (never change them on upgrade). */}}
{{- define "kubext.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubext.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The labels on every object. */}}
{{- define "kubext.labels" -}}
helm.sh/chart: {{ include "kubext.chart" . }}
{{ include "kubext.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubext
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The ServiceAccount the pods run as. */}}
{{- define "kubext.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubext.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag (tag defaults to the chart's appVersion), or repository@digest. */}}
{{- define "kubext.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/*
The service's config file: .Values.config with the chart's wiring ("kubext.wiring" in
_<chart>.tpl: names of objects this release creates) laid over it. A config key that the wiring
sets to something else stops the render with a message naming the key.
*/}}
{{- define "kubext.configData" -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- $wiring := include "kubext.wiring" . | fromYaml | default dict -}}
{{- include "kubext.checkWiring" (dict "config" $config "wiring" $wiring "path" "") -}}
{{- $merged := mergeOverwrite $config $wiring -}}
{{- if $merged }}{{ toYaml $merged }}{{ else }}{}{{ end -}}
{{- end -}}

{{- define "kubext.checkWiring" -}}
{{- $config := .config -}}
{{- $prefix := .path -}}
{{- range $key, $want := .wiring -}}
{{- $path := ternary $key (printf "%s.%s" $prefix $key) (eq $prefix "") -}}
{{- if hasKey $config $key -}}
{{- $got := index $config $key -}}
{{- if and (kindIs "map" $want) (kindIs "map" $got) -}}
{{- include "kubext.checkWiring" (dict "config" $got "wiring" $want "path" $path) -}}
{{- else if ne (toJson $got) (toJson $want) -}}
{{- fail (printf "config.%s: the chart sets it to %s to match the objects it creates; leave it out of .Values.config (values.yaml says which value drives it)" $path (toJson $want)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The health port: config.health.port, else the service's default (8080). */}}
{{- define "kubext.healthPort" -}}
{{- dig "health" "port" 8080 (.Values.config | default dict) | int -}}
{{- end -}}

{{/* The ConfigMap holding config.yaml. */}}
{{- define "kubext.configMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "kubext.fullname" . }}-config
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "kubext.labels" . | nindent 4 }}
data:
  # The keys the service accepts are in services/{{ .Chart.Name }}/README.md.
  config.yaml: |
    {{- include "kubext.configData" . | nindent 4 }}
{{- end -}}

{{/* Pod annotations: a config checksum (a config change rolls the pods) and the user's. */}}
{{- define "kubext.podAnnotations" -}}
checksum/config: {{ include "kubext.configData" . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The service's container, less its name, ports, env and mounts: image, --config, probes on the
health port, resources, securityContext. Takes (dict "root" $ "values" <map>), where the map holds
resources, securityContext, livenessProbe and readinessProbe (.Values, or a component's block).
*/}}
{{- define "kubext.container" -}}
{{- $root := .root -}}
image: {{ include "kubext.image" $root }}
imagePullPolicy: {{ $root.Values.image.pullPolicy }}
args:
  - --config
  - /etc/kubext/config.yaml
{{- with $root.Values.extraArgs }}
  {{- toYaml . | nindent 2 }}
{{- end }}
livenessProbe:
  httpGet:
    path: /healthz
    port: health
  {{- toYaml .values.livenessProbe | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: health
  {{- toYaml .values.readinessProbe | nindent 2 }}
resources:
  {{- toYaml .values.resources | nindent 2 }}
securityContext:
  {{- toYaml .values.securityContext | nindent 2 }}
{{- end -}}

{{/* The health port entry of the container's ports. */}}
{{- define "kubext.healthContainerPort" -}}
- name: health
  containerPort: {{ include "kubext.healthPort" . }}
  protocol: TCP
{{- end -}}

{{/* Env every service gets: where it runs (downward API). */}}
{{- define "kubext.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Mounts: /etc/kubext (config.yaml; no subPath, so edits reach running pods), and /tmp for PEX_ROOT (the root filesystem is read-only). */}}
{{- define "kubext.commonVolumeMounts" -}}
- name: config
  mountPath: /etc/kubext
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "kubext.commonVolumes" -}}
- name: config
  configMap:
    name: {{ include "kubext.fullname" . }}-config
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}

{{/* Scheduling knobs of a pod template; takes (dict "root" $ "values" <map>) like kubext.container. */}}
{{- define "kubext.podScheduling" -}}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The ServiceAccount object. */}}
{{- define "kubext.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "kubext.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "kubext.labels" . | nindent 4 }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
{{- end -}}
{{- end -}}
