{{/* The driver's config needs nothing from the chart: the chart follows the config instead. */}}
{{- define "kubext.wiring" -}}
{}
{{- end -}}

{{/* The driver's name: config.driver_name, else the service's default. */}}
{{- define "csi.driverName" -}}
{{- dig "driver_name" "csi.kubext.io" (.Values.config | default dict) -}}
{{- end -}}

{{/* Where the driver keeps its state and volumes: config.state_dir, else the service's default. */}}
{{- define "csi.stateDir" -}}
{{- dig "state_dir" "/var/lib/kubext-csi" (.Values.config | default dict) -}}
{{- end -}}

{{/* The kubelet's directory for this driver's socket. */}}
{{- define "csi.pluginDir" -}}
{{- printf "%s/plugins/%s" (trimSuffix "/" .Values.kubeletDir) (include "csi.driverName" .) -}}
{{- end -}}

{{- define "csi.storageClassName" -}}
{{- default (include "kubext.fullname" .) .Values.storageClass.name -}}
{{- end -}}

{{/* Labels of one component's pods: (dict "root" $ "component" "controller"). */}}
{{- define "csi.selectorLabels" -}}
{{ include "kubext.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A sidecar of the controller pod: (dict "root" $ "name" "csi-provisioner" "sidecar" <values> "args" <list>). */}}
{{- define "csi.sidecar" -}}
- name: {{ .name }}
  image: {{ .sidecar.image }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  args:
    {{- toYaml (concat .args .sidecar.extraArgs) | nindent 4 }}
  env:
    - name: ADDRESS
      value: /csi/csi.sock
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
  resources:
    {{- toYaml .sidecar.resources | nindent 4 }}
  securityContext:
    {{- toYaml .root.Values.sidecarSecurityContext | nindent 4 }}
  volumeMounts:
    - name: socket-dir
      mountPath: /csi
{{- end -}}
