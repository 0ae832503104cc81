{{- define "otel-benchlab.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "otel-benchlab.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "otel-benchlab.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "otel-benchlab.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "otel-benchlab.selectorLabels" -}}
app.kubernetes.io/name: {{ include "otel-benchlab.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "otel-benchlab.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "otel-benchlab.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "otel-benchlab.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Root only where a host interface demands it (RAPL counters, the kubelet socket). */}}
{{- define "otel-benchlab.asRoot" -}}
{{- if or (and .Values.hardware.sysfs.enabled .Values.hardware.sysfs.readRaplAsRoot) .Values.hardware.podResources.enabled .Values.hardware.benchlab.enabled }}true{{ end }}
{{- end }}

{{- define "otel-benchlab.containerSecurityContext" -}}
{{- if and .Values.hardware.benchlab.enabled .Values.hardware.benchlab.privileged }}
privileged: true
{{- else }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
  {{- if and .Values.hardware.sysfs.enabled .Values.hardware.sysfs.readRaplAsRoot }}
  add: ["DAC_READ_SEARCH"]
  {{- end }}
{{- end }}
{{- if include "otel-benchlab.asRoot" . }}
runAsUser: 0
runAsNonRoot: false
{{- else }}
runAsUser: 10001
runAsGroup: 10001
runAsNonRoot: true
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}
