{{/*
Names. The release is one customer (e.g. customer-abc0001); every object is named
<fullname>-<component>, the fullname being the release name unless overridden.
*/}}
{{- define "tau-portal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tau-portal.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* <fullname>-<component>; call with (list $ "portal") */}}
{{- define "tau-portal.component" -}}
{{- $ctx := index . 0 -}}
{{- printf "%s-%s" (include "tau-portal.fullname" $ctx) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tau-portal.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The customer's host: <customer.id>.<domain.base> */}}
{{- define "tau-portal.host" -}}
{{- $id := required "customer.id is required" .Values.customer.id -}}
{{- $base := required "domain.base is required" .Values.domain.base -}}
{{- printf "%s.%s" $id $base -}}
{{- end -}}

{{- define "tau-portal.publicUrl" -}}
{{- printf "https://%s" (include "tau-portal.host" .) -}}
{{- end -}}

{{/* The Secret every credential comes from (the chart's, or secrets.existingSecret). */}}
{{- define "tau-portal.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- include "tau-portal.component" (list . "secrets") -}}
{{- end -}}
{{- end -}}

{{- define "tau-portal.tlsSecretName" -}}
{{- default (include "tau-portal.component" (list . "tls")) .Values.ingress.tlsSecretName -}}
{{- end -}}

{{/* Labels common to every object; call with (list $ "component"). */}}
{{- define "tau-portal.labels" -}}
{{- $ctx := index . 0 -}}
helm.sh/chart: {{ include "tau-portal.chart" $ctx }}
{{ include "tau-portal.selectorLabels" . }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/part-of: tau-acuvim-portal
tau-acuvim.io/customer: {{ $ctx.Values.customer.id | quote }}
{{- end -}}

{{/* Selector labels of one component; call with (list $ "component"). */}}
{{- define "tau-portal.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "tau-portal.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Labels of the whole release, for selecting all of its pods (NetworkPolicy). */}}
{{- define "tau-portal.releaseSelector" -}}
app.kubernetes.io/name: {{ include "tau-portal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
The read-only database role Grafana's data source logs in as (the portal creates it, README
"Grafana's database role"). Grafana's free edition lets every user run any SQL on its data
source, so it must never be the portal's own user.
*/}}
{{- define "tau-portal.grafanaDatabaseUser" -}}
{{- $user := .Values.grafana.databaseUser -}}
{{- if eq $user .Values.database.user -}}
{{- fail (printf "grafana.databaseUser %q is the portal's own database user (database.user): Grafana's data source needs a read-only role of its own, e.g. grafana_reader" $user) -}}
{{- end -}}
{{- $user -}}
{{- end -}}

{{/* The broker's database role (the portal creates it: SELECT on mqtt_users and mqtt_acls). */}}
{{- define "tau-portal.mqttDatabaseUser" -}}
{{- $user := .Values.mosquitto.databaseUser -}}
{{- if or (eq $user .Values.database.user) (eq $user .Values.grafana.databaseUser) -}}
{{- fail (printf "mosquitto.databaseUser %q is another login of the release (database.user or grafana.databaseUser): the broker needs a role of its own, e.g. mqtt_auth" $user) -}}
{{- end -}}
{{- $user -}}
{{- end -}}

{{/* An env entry read from the Secret; call with (list $ "ENV_NAME" "SECRET_KEY"). */}}
{{- define "tau-portal.secretEnv" -}}
{{- $ctx := index . 0 -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "tau-portal.secretName" $ctx }}
      key: {{ index . 2 }}
{{- end -}}

{{/* Hardened container settings shared by the portal and Grafana. */}}
{{- define "tau-portal.containerSecurity" -}}
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* A PVC spec; call with (dict "size" ... "storageClass" ...). */}}
{{- define "tau-portal.pvcSpec" -}}
accessModes: ["ReadWriteOnce"]
{{- with .storageClass }}
storageClassName: {{ . | quote }}
{{- end }}
resources:
  requests:
    storage: {{ .size | quote }}
{{- end -}}

{{- define "tau-portal.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
