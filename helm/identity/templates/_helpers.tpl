{{/* vim: set filetype=mustache: */}}

{{- define "identity.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, at most 63 characters (DNS label). If the release name already contains the
chart name it is used as is.
*/}}
{{- define "identity.fullname" -}}
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

{{- define "identity.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "identity.selectorLabels" -}}
app.kubernetes.io/name: {{ include "identity.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "identity.labels" -}}
helm.sh/chart: {{ include "identity.chart" . }}
{{ include "identity.selectorLabels" . }}
app.kubernetes.io/version: {{ include "identity.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: identity
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "identity.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "identity.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "identity.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "identity.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "identity.imageTag" .) }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding database URL, service tokens and signing keys. */}}
{{- define "identity.secretName" -}}
{{- default (printf "%s-secrets" (include "identity.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{/* The hook-only Secret (chart-created mode) that carries the database URL to the migration Job. */}}
{{- define "identity.migrationSecretName" -}}
{{- printf "%s-migration" (include "identity.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "identity.terminationGracePeriodSeconds" -}}
{{- $min := add (int .Values.config.shutdownDelaySeconds) (int .Values.config.shutdownGraceSeconds) }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $min 10 }}
{{- else if eq (toString .Values.terminationGracePeriodSeconds) "" }}
{{- add $min 10 }}
{{- else if le (int .Values.terminationGracePeriodSeconds) $min }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be greater than config.shutdownDelaySeconds + config.shutdownGraceSeconds (%d)" .Values.terminationGracePeriodSeconds $min) }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* Key of the Google client secret in the chart-created Secret. */}}
{{- define "identity.googleClientSecretKey" -}}
{{- default "google-client-secret" .Values.secrets.keys.googleClientSecret }}
{{- end }}

{{/* A list value as one comma-separated string (a string is taken as is); "" when empty. */}}
{{- define "identity.commaList" -}}
{{- if kindIs "slice" . }}
{{- $items := list }}
{{- range . }}{{ if . }}{{ $items = append $items (toString . | trim) }}{{ end }}{{ end }}
{{- join "," $items }}
{{- else if not (kindIs "invalid" .) }}
{{- toString . | trim }}
{{- end }}
{{- end }}

{{/* A whole-number value as a string; "" when unset or empty. */}}
{{- define "identity.wholeNumber" -}}
{{- if not (kindIs "invalid" .) }}
{{- if kindIs "float64" . }}
{{- int64 . }}
{{- else }}
{{- toString . | trim }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Names of the variables given outside the chart's named values (env, extraEnv, secrets.extraFiles),
as YAML {names: [...], envFrom: bool}; envFrom is true when extra envFrom sources may set anything.
*/}}
{{- define "identity.otherEnvNames" -}}
{{- $names := keys .Values.env }}
{{- range .Values.extraEnv }}{{ $names = append $names .name }}{{ end }}
{{- range .Values.secrets.extraFiles }}{{ $names = append $names .env }}{{ end }}
{{- toYaml (dict "names" $names "envFrom" (not (empty .Values.envFrom))) }}
{{- end }}

{{/*
Secret files: a list of {secretName, key, path, env}, one per file projected into secrets.mountPath.
Rendered as YAML; read back with fromYaml (key "files").
*/}}
{{- define "identity.secretFiles" -}}
{{- $s := .Values.secrets }}
{{- $name := include "identity.secretName" . }}
{{- $files := list }}
{{- if $s.existingSecret }}
  {{- if $s.keys.databaseUrl }}{{ $files = append $files (dict "secretName" $name "key" $s.keys.databaseUrl "path" "database-url" "env" "IDENTITY_DATABASE_URL_FILE") }}{{ end }}
  {{- if $s.keys.serviceTokens }}{{ $files = append $files (dict "secretName" $name "key" $s.keys.serviceTokens "path" "service-tokens" "env" "IDENTITY_SERVICE_TOKENS_FILE") }}{{ end }}
  {{- if $s.keys.signingKeys }}{{ $files = append $files (dict "secretName" $name "key" $s.keys.signingKeys "path" "signing-keys" "env" "IDENTITY_SIGNING_KEYS_FILE") }}{{ end }}
  {{- if $s.keys.secretKey }}{{ $files = append $files (dict "secretName" $name "key" $s.keys.secretKey "path" "secret-key" "env" "IDENTITY_SECRET_KEY_FILE") }}{{ end }}
  {{- if $s.keys.googleClientSecret }}{{ $files = append $files (dict "secretName" $name "key" $s.keys.googleClientSecret "path" "google-client-secret" "env" "IDENTITY_GOOGLE_CLIENT_SECRET_FILE") }}{{ end }}
{{- else }}
  {{- if $s.databaseUrl }}{{ $files = append $files (dict "secretName" $name "key" $s.keys.databaseUrl "path" "database-url" "env" "IDENTITY_DATABASE_URL_FILE") }}{{ end }}
  {{- if $s.serviceTokens }}{{ $files = append $files (dict "secretName" $name "key" $s.keys.serviceTokens "path" "service-tokens" "env" "IDENTITY_SERVICE_TOKENS_FILE") }}{{ end }}
  {{- if $s.signingKeys }}{{ $files = append $files (dict "secretName" $name "key" $s.keys.signingKeys "path" "signing-keys" "env" "IDENTITY_SIGNING_KEYS_FILE") }}{{ end }}
  {{- if $s.secretKey }}{{ $files = append $files (dict "secretName" $name "key" $s.keys.secretKey "path" "secret-key" "env" "IDENTITY_SECRET_KEY_FILE") }}{{ end }}
  {{- if $s.googleClientSecret }}{{ $files = append $files (dict "secretName" $name "key" (include "identity.googleClientSecretKey" $) "path" "google-client-secret" "env" "IDENTITY_GOOGLE_CLIENT_SECRET_FILE") }}{{ end }}
{{- end }}
{{- range $s.extraFiles }}
  {{- if not (and .env .key) }}{{ fail "every secrets.extraFiles entry needs env and key" }}{{ end }}
  {{- $files = append $files (dict "secretName" (default $name .secretName) "key" .key "path" (default .key .path) "env" .env) }}
{{- end }}
{{- toYaml (dict "files" $files) }}
{{- end }}

{{/* Fails the render with a clear message when the values cannot make a working deployment. */}}
{{- define "identity.validate" -}}
{{- $s := .Values.secrets }}
{{- if not $s.existingSecret }}
  {{- if not $s.databaseUrl }}
    {{- fail "secrets.databaseUrl is required (a postgres:// URL), or set secrets.existingSecret to a Secret holding it. Without a database URL the server would start in single-node SQLite dev mode, which this chart does not deploy." }}
  {{- end }}
  {{- if not (regexMatch "^postgres(ql)?://" $s.databaseUrl) }}
    {{- fail "secrets.databaseUrl must start with postgres:// or postgresql://" }}
  {{- end }}
  {{- if not $s.signingKeys }}
    {{- fail "secrets.signingKeys is required (JSON array of entries printed by `identity keygen`): every replica must sign and verify with the same keys. Or set secrets.existingSecret." }}
  {{- end }}
  {{- if not $s.secretKey }}
    {{- fail "secrets.secretKey is required (32 or more random bytes, base64: `openssl rand -base64 32`): it keys the hashes of emailed codes, and every replica must share it. Or set secrets.existingSecret." }}
  {{- end }}
  {{- if not $s.keys.databaseUrl }}{{ fail "secrets.keys.databaseUrl must name a key" }}{{ end }}
  {{- if not $s.keys.signingKeys }}{{ fail "secrets.keys.signingKeys must name a key" }}{{ end }}
  {{- if and $s.serviceTokens (not $s.keys.serviceTokens) }}{{ fail "secrets.keys.serviceTokens must name a key" }}{{ end }}
{{- else }}
  {{- if not $s.keys.databaseUrl }}
    {{- fail "secrets.keys.databaseUrl must name the key holding the PostgreSQL URL in secrets.existingSecret" }}
  {{- end }}
{{- end }}
{{- $other := include "identity.otherEnvNames" . | fromYaml }}
{{- $e := default (dict) .Values.config.email }}
{{- $mailer := toString (default "" $e.mailer) }}
{{- if and (eq $mailer "") (not (has "IDENTITY_MAILER" $other.names)) (not $other.envFrom) }}
  {{- fail "config.email.mailer must be set: ses (with config.email.from), or console, which prints every email with its live links and codes into the log" }}
{{- end }}
{{- if not (has $mailer (list "" "console" "ses")) }}
  {{- fail (printf "config.email.mailer must be console or ses, not %q" $mailer) }}
{{- end }}
{{- if and (eq $mailer "ses") (not $e.from) (not (has "IDENTITY_EMAIL_FROM" $other.names)) (not $other.envFrom) }}
  {{- fail "config.email.mailer=ses needs config.email.from (a From address or domain verified in SES)" }}
{{- end }}
{{- $horizon := include "identity.wholeNumber" $e.retryHorizonSeconds }}
{{- if and $horizon (not (regexMatch "^[1-9][0-9]*$" $horizon)) }}
  {{- fail (printf "config.email.retryHorizonSeconds must be a positive whole number of seconds, not %v" $e.retryHorizonSeconds) }}
{{- end }}
{{- $g := default (dict) .Values.config.google }}
{{- if hasKey $g "clientSecret" }}
  {{- fail "config.google.clientSecret is not a value: the client secret goes in secrets.googleClientSecret (or, with secrets.existingSecret, in that Secret under secrets.keys.googleClientSecret), never in the ConfigMap" }}
{{- end }}
{{- $googleSecret := ternary $s.keys.googleClientSecret $s.googleClientSecret (not (empty $s.existingSecret)) }}
{{- $googleSecretOption := ternary "secrets.keys.googleClientSecret" "secrets.googleClientSecret" (not (empty $s.existingSecret)) }}
{{- if and (not $g.clientId) (not (has "IDENTITY_GOOGLE_CLIENT_ID" $other.names)) (not $other.envFrom) }}
  {{- if or $g.issuer (include "identity.commaList" $g.redirectUris) $googleSecret }}
    {{- fail (printf "config.google.issuer, config.google.redirectUris and %s need config.google.clientId: Google login is off without it" $googleSecretOption) }}
  {{- end }}
{{- end }}
{{- if $googleSecret }}
  {{- range list "IDENTITY_GOOGLE_CLIENT_SECRET" "IDENTITY_GOOGLE_CLIENT_SECRET_FILE" }}
    {{- if has . $other.names }}
      {{- fail (printf "%s is set, so %s must not also be set in env, extraEnv or secrets.extraFiles" $googleSecretOption .) }}
    {{- end }}
  {{- end }}
{{- else if and (include "identity.commaList" $g.redirectUris) (not (has "IDENTITY_GOOGLE_CLIENT_SECRET" $other.names)) (not (has "IDENTITY_GOOGLE_CLIENT_SECRET_FILE" $other.names)) (not $other.envFrom) }}
  {{- fail (printf "config.google.redirectUris needs the Google client secret (%s): exchanging authorization codes needs it" $googleSecretOption) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
  {{- fail "autoscaling.maxReplicas must be >= autoscaling.minReplicas" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not .Values.autoscaling.targetCPUUtilizationPercentage) (not .Values.autoscaling.targetMemoryUtilizationPercentage) }}
  {{- fail "autoscaling needs targetCPUUtilizationPercentage and/or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- end }}

{{/*
Non-secret environment, as a flat map NAME: "value". Shared by the ConfigMap (pods) and the migration
Job, which gets it inline because hooks run before the ConfigMap exists on first install.
*/}}
{{- define "identity.configEnv" -}}
{{- $c := .Values.config }}
{{- $env := dict
  "IDENTITY_LISTEN_ADDR" (printf "%s:%d" $c.listenHost (int .Values.containerPort))
  "IDENTITY_LOG_FORMAT" (toString $c.logFormat)
  "RUST_LOG" (toString $c.logLevel)
  "IDENTITY_DB_MAX_CONNECTIONS" (toString $c.dbMaxConnections)
  "IDENTITY_ACCESS_STALENESS_MS" (toString $c.accessStalenessMs)
  "IDENTITY_ACCESS_CACHE_MB" (toString $c.accessCacheMb)
  "IDENTITY_AUDIT_RETENTION_DAYS" (toString $c.auditRetentionDays)
  "IDENTITY_DEFAULT_MAX_USERS" (toString $c.defaultMaxUsers)
  "IDENTITY_DEFAULT_MAX_GROUPS" (toString $c.defaultMaxGroups)
  "IDENTITY_SHUTDOWN_DELAY_SECONDS" (toString $c.shutdownDelaySeconds)
  "IDENTITY_SHUTDOWN_GRACE_SECONDS" (toString $c.shutdownGraceSeconds)
}}
{{- if $c.issuer }}
{{- $_ := set $env "IDENTITY_ISSUER" (toString $c.issuer) }}
{{- end }}
{{- /* Email and Google login: only the values given, so the service's defaults apply to the rest. */}}
{{- $e := default (dict) $c.email }}
{{- $ses := default (dict) $e.ses }}
{{- $g := default (dict) $c.google }}
{{- $named := dict
  "IDENTITY_PUBLIC_URL" $c.publicUrl
  "IDENTITY_CLIENT_IP_HEADER" $c.clientIpHeader
  "IDENTITY_MAILER" $e.mailer
  "IDENTITY_EMAIL_FROM" $e.from
  "IDENTITY_EMAIL_REPLY_TO" (include "identity.commaList" $e.replyTo)
  "IDENTITY_EMAIL_RETRY_HORIZON_SECONDS" (include "identity.wholeNumber" $e.retryHorizonSeconds)
  "IDENTITY_SES_REGION" $ses.region
  "IDENTITY_SES_CONFIGURATION_SET" $ses.configurationSet
  "IDENTITY_SES_ENDPOINT_URL" $ses.endpointUrl
  "IDENTITY_GOOGLE_CLIENT_ID" $g.clientId
  "IDENTITY_GOOGLE_ISSUER" $g.issuer
  "IDENTITY_GOOGLE_REDIRECT_URIS" (include "identity.commaList" $g.redirectUris)
}}
{{- range $k, $v := $named }}
{{- if not (kindIs "invalid" $v) }}
{{- with toString $v | trim }}
{{- $_ := set $env $k . }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.otel.endpoint }}
{{- $_ := set $env "OTEL_EXPORTER_OTLP_ENDPOINT" (toString .Values.otel.endpoint) }}
{{- $_ := set $env "OTEL_SERVICE_NAME" (default "identity" .Values.otel.serviceName) }}
{{- end }}
{{- range $k, $v := .Values.env }}
{{- $_ := set $env $k (toString $v) }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/*
Container env entries that are not in the ConfigMap: downward-API values and OTEL_RESOURCE_ATTRIBUTES
(which expands them, so it must come after them in the same env list).
*/}}
{{- define "identity.runtimeEnv" -}}
{{- if .Values.otel.endpoint }}
{{- $attrs := list }}
{{- if .Values.otel.kubernetesAttributes }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- $attrs = append $attrs "k8s.pod.name=$(K8S_POD_NAME)" }}
{{- $attrs = append $attrs "k8s.namespace.name=$(K8S_NAMESPACE)" }}
{{- $attrs = append $attrs "k8s.node.name=$(K8S_NODE_NAME)" }}
{{- $attrs = append $attrs "service.instance.id=$(K8S_POD_NAME)" }}
{{- $attrs = append $attrs (printf "service.version=%s" (include "identity.imageTag" .)) }}
{{- end }}
{{- range $k, $v := .Values.otel.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%v" $k $v) }}
{{- end }}
{{- if $attrs }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod-level scheduling spread: explicit constraints, or soft ones built from topologySpread. */}}
{{- define "identity.topologySpreadConstraints" -}}
{{- if .Values.topologySpreadConstraints }}
{{- toYaml .Values.topologySpreadConstraints }}
{{- else if .Values.topologySpread.enabled }}
{{- range .Values.topologySpread.topologyKeys }}
- maxSkew: {{ $.Values.topologySpread.maxSkew }}
  topologyKey: {{ . }}
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "identity.selectorLabels" $ | nindent 6 }}
  matchLabelKeys:
    - pod-template-hash
{{- end }}
{{- end }}
{{- end }}

{{/*
A probe from values with the gRPC port filled in (grpc probes take a port number, not a name).
Usage: include "identity.probe" (dict "probe" .Values.livenessProbe "port" .Values.containerPort)
*/}}
{{- define "identity.probe" -}}
{{- $p := deepCopy .probe }}
{{- if hasKey $p "grpc" }}
{{- $g := default (dict) $p.grpc }}
{{- $_ := set $g "port" (int (default .port $g.port)) }}
{{- $_ := set $p "grpc" $g }}
{{- else if hasKey $p "tcpSocket" }}
{{- $t := default (dict) $p.tcpSocket }}
{{- $_ := set $t "port" (default "grpc" $t.port) }}
{{- $_ := set $p "tcpSocket" $t }}
{{- end }}
{{- toYaml $p }}
{{- end }}

{{/*
Projected volume "secrets" for a list of secret files (see identity.secretFiles). Items are grouped per
Secret. Mode 0440 (288): readable by the pod's fsGroup, nobody else.
Usage: include "identity.secretsVolume" (list of {secretName, key, path})
*/}}
{{- define "identity.secretsVolume" -}}
{{- $bySecret := dict }}
{{- range . }}
{{- $items := get $bySecret .secretName | default list }}
{{- $_ := set $bySecret .secretName (append $items (dict "key" .key "path" .path)) }}
{{- end }}
- name: secrets
  projected:
    defaultMode: 288
    sources:
      {{- range $name, $items := $bySecret }}
      - secret:
          name: {{ $name }}
          items:
            {{- toYaml $items | nindent 12 }}
      {{- end }}
{{- end }}

{{/* Pod and container security settings shared by the Deployment and the migration Job. */}}
{{- define "identity.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}
{{- define "identity.containerSecurityContext" -}}
{{- toYaml .Values.securityContext }}
{{- end }}
