{{/*
The chart follows the driver's config (driver_name, state_dir, health.port), except for the jobs
of the sidecars it leaves out: those the driver then does itself.
*/}}
{{- define "kubext.wiring" -}}
{{- $sidecars := .Values.sidecars -}}
{{- if and $sidecars.provisioner.enabled $sidecars.nodeDriverRegistrar.enabled }}
{}
{{- end }}
{{- if not $sidecars.provisioner.enabled }}
# No csi-provisioner sidecar: the driver's built-in provisioner takes the claims.
provisioner:
  enabled: true
{{- end }}
{{- if not $sidecars.nodeDriverRegistrar.enabled }}
# No node-driver-registrar: the driver serves the kubelet's plugin registration itself, its
# socket in the kubelet's plugins_registry (mounted at the same path), naming the CSI socket
# where the kubelet finds it (the plugin dir on the host).
registration:
  enabled: true
  kubelet_dir: {{ trimSuffix "/" .Values.kubeletDir }}
  kubelet_csi_path: {{ include "csi.pluginDir" . }}/csi.sock
{{- end }}
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

{{/* Labels of one component's pods: (dict "root" $ "component" "node"). */}}
{{- define "csi.selectorLabels" -}}
{{ include "kubext.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
The Leases the leader-electing sidecars take (csi-lib-utils' sanitizeName over the lock name they
build from the driver name): (dict "root" $ "prefix" "external-resizer-").
*/}}
{{- define "csi.leaseName" -}}
{{- $name := regexReplaceAll "[^a-zA-Z0-9-]" (printf "%s%s" .prefix (include "csi.driverName" .root)) "-" -}}
{{- if hasSuffix "-" $name }}{{ $name }}X{{ else }}{{ $name }}{{ end -}}
{{- end -}}

{{/* The Leases of this release's leader-electing sidecars, one a line (none: empty). */}}
{{- define "csi.leases" -}}
{{- if .Values.sidecars.resizer.enabled }}
{{ include "csi.leaseName" (dict "root" . "prefix" "external-resizer-") }}
{{- end }}
{{- if .Values.csiDriver.attachRequired }}
{{ include "csi.leaseName" (dict "root" . "prefix" "external-attacher-leader-") }}
{{- end }}
{{- end -}}

{{/*
An API-calling sidecar of the node pod: (dict "root" $ "name" "csi-provisioner" "sidecar" <values>
"args" <list>). Only these containers get the ServiceAccount's token (the kube-api-access volume);
the privileged driver and the registrar never do.
*/}}
{{- define "csi.sidecar" -}}
- name: {{ .name }}
  image: {{ .sidecar.image }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  args:
    {{- toYaml (concat .args .sidecar.extraArgs) | nindent 4 }}
  env:
    - name: ADDRESS
      value: /csi/csi.sock
    # --node-deployment: the node whose PVCs, PVs and snapshots this instance handles.
    - name: NODE_NAME
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
    # Where CSIStorageCapacity objects go (csi-provisioner) and the Leases live.
    - name: NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    # With --capacity-ownerref-level the owner is found from this pod.
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
  resources:
    {{- toYaml .sidecar.resources | nindent 4 }}
  securityContext:
    {{- toYaml .root.Values.sidecarSecurityContext | nindent 4 }}
  volumeMounts:
    - name: plugin-dir
      mountPath: /csi
    - name: kube-api-access
      mountPath: /var/run/secrets/kubernetes.io/serviceaccount
      readOnly: true
{{- end -}}

{{/* Values that contradict each other stop the render with a message. */}}
{{- define "csi.checks" -}}
{{- if dig "node_id" "" (.Values.config | default dict) -}}
{{- fail "config.node_id: leave it unset; each node's driver takes its node name (NODE_ID), which is also its topology value, and one fixed id would claim every volume is on every node" -}}
{{- end -}}
{{- if and .Values.storageClass.create .Values.storageClass.allowVolumeExpansion (not .Values.sidecars.resizer.enabled) -}}
{{- fail "storageClass.allowVolumeExpansion needs sidecars.resizer.enabled: without csi-resizer a resized claim waits forever. external-resizer cannot run per node (no --node-deployment), so enable it only where the driver runs on one node (see values.yaml)" -}}
{{- end -}}
{{- if and (not .Values.sidecars.provisioner.enabled) .Values.csiDriver.storageCapacity -}}
{{- fail "sidecars.provisioner.enabled=false needs csiDriver.storageCapacity=false: the driver's built-in provisioner publishes no CSIStorageCapacity, and the scheduler would find no room on any node" -}}
{{- end -}}
{{- if and (not .Values.sidecars.provisioner.enabled) .Values.volumeAttributesClasses.create -}}
{{- fail "volumeAttributesClasses.create needs sidecars.provisioner.enabled: the driver's built-in provisioner passes no mutable parameters" -}}
{{- end -}}
{{- if and .Values.snapshotClass.create (not .Values.sidecars.snapshotter.enabled) -}}
{{- fail "snapshotClass.create needs sidecars.snapshotter.enabled: without csi-snapshotter no snapshot of the class is ever cut" -}}
{{- end -}}
{{- if and .Values.groupSnapshotClass.create (not .Values.sidecars.snapshotter.enabled) -}}
{{- fail "groupSnapshotClass.create needs sidecars.snapshotter.enabled: without csi-snapshotter no group snapshot of the class is ever cut" -}}
{{- end -}}
{{- end -}}
