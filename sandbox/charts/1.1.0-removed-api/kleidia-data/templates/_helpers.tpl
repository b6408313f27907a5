{{- define "data.labels" -}}
app: postgres-cluster
app.kubernetes.io/name: postgres
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: kleidia
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}
{{- define "data.selector" -}}
app: postgres-cluster
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- define "data.fullname" -}}
{{ .Release.Name }}-postgres-cluster
{{- end }}
