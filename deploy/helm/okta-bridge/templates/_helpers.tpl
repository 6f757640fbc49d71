{{/* Names and labels. */}}
{{- define "okta-bridge.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "okta-bridge.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* selector labels of one component: (dict "ctx" $ "component" "queue-poller") */}}
{{- define "okta-bridge.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "okta-bridge.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "okta-bridge.fullname" .) -}}
{{- end -}}

{{- define "okta-bridge.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* A pool's name as a Kubernetes name part (pools may hold `_`). */}}
{{- define "okta-bridge.poolSlug" -}}
{{- . | replace "_" "-" -}}
{{- end -}}

{{/* The connectors file, as mounted. */}}
{{- define "okta-bridge.connectorsFile" -}}
{{- $file := dict "apps" .Values.connectors.apps -}}
{{- if .Values.connectors.pools -}}{{- $_ := set $file "pools" .Values.connectors.pools -}}{{- end -}}
{{- toYaml $file -}}
{{- end -}}

{{/* The pools of the connectors file and their partitions, as JSON: {"default": 8, ...}. An app's pool is
     `default` unless set; pools.<pool>.partitions is 8 unless set (shared/okta_bridge/connectors.py). */}}
{{- define "okta-bridge.pools" -}}
{{- $pools := dict -}}
{{- range .Values.connectors.apps -}}
{{- $_ := set $pools (.pool | default "default") 8 -}}
{{- end -}}
{{- range $name, $pool := (.Values.connectors.pools | default dict) -}}
{{- $_ := set $pools $name (($pool | default dict).partitions | default 8 | int) -}}
{{- end -}}
{{- toJson $pools -}}
{{- end -}}

{{/* The longest timeout_s of the apps of a pool: (dict "ctx" $ "pool" "default"). */}}
{{- define "okta-bridge.poolTimeout" -}}
{{- $max := 0.0 -}}
{{- range .ctx.Values.connectors.apps -}}
{{- if eq (.pool | default "default") $.pool -}}
{{- $t := (.timeout_s | default 30.0) | float64 -}}
{{- if gt $t $max -}}{{- $max = $t -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- $max -}}
{{- end -}}

{{/* One dispatcher entry with dispatcherDefaults under it: (dict "ctx" $ "pool" "default"). */}}
{{- define "okta-bridge.dispatcher" -}}
{{- $own := index .ctx.Values.dispatchers .pool | default dict -}}
{{- toJson (mergeOverwrite (deepCopy .ctx.Values.dispatcherDefaults) (deepCopy $own)) -}}
{{- end -}}

{{/* Values that contradict each other: fail at `helm template` / `helm install` with what to change. */}}
{{- define "okta-bridge.validate" -}}
{{- if not .Values.okta.orgUrl -}}
{{- fail "okta.orgUrl is required: your Okta org, e.g. --set okta.orgUrl=https://acme.okta.com (docs/deploy.md)" -}}
{{- end -}}
{{- if and (eq .Values.okta.auth "oauth") (not .Values.okta.clientId) -}}
{{- fail "okta.clientId is required with okta.auth=oauth: the service app's client id (0oa…); or set okta.auth=ssws and okta.apiTokenId (docs/deploy.md)" -}}
{{- end -}}
{{- if and (eq .Values.okta.auth "ssws") (not .Values.okta.apiTokenId) -}}
{{- fail "okta.apiTokenId is required with okta.auth=ssws: the API token's id (00T…), so the bridge recognises its own writes" -}}
{{- end -}}
{{- if not .Values.connectors.apps -}}
{{- fail "connectors.apps is empty: the chart renders the connectors file from the value `connectors` (deploy/connectors.example.yaml; docs/deploy.md)" -}}
{{- end -}}
{{- $pools := include "okta-bridge.pools" . | fromJson -}}
{{- range $name, $_ := (.Values.connectors.pools | default dict) -}}
{{- $used := false -}}
{{- range $.Values.connectors.apps -}}{{- if eq (.pool | default "default") $name -}}{{- $used = true -}}{{- end -}}{{- end -}}
{{- if not $used -}}
{{- fail (printf "connectors.pools.%s: no app of the connectors file is in pool %s (the services would refuse the file)" $name $name) -}}
{{- end -}}
{{- end -}}
{{- range $pool, $partitions := $pools -}}
{{- if not (hasKey $.Values.dispatchers $pool) -}}
{{- fail (printf "pool %q of the connectors file has no dispatcher Deployment: add dispatchers.%s ({} takes dispatcherDefaults), or its plans would wait forever" $pool $pool) -}}
{{- end -}}
{{- end -}}
{{- range $pool, $_ := .Values.dispatchers -}}
{{- if not (hasKey $pools $pool) -}}
{{- fail (printf "dispatchers.%s serves no pool of the connectors file (pools: %s): remove it or give an app `pool: %s`" $pool (keys $pools | sortAlpha | join ", ") $pool) -}}
{{- end -}}
{{- $d := include "okta-bridge.dispatcher" (dict "ctx" $ "pool" $pool) | fromJson -}}
{{- $partitions := index $pools $pool | int -}}
{{- if $.Values.keda.enabled -}}
{{- if not (kindIs "invalid" $d.replicas) -}}
{{- fail (printf "dispatchers.%s: replicas is set while keda.enabled=true: KEDA owns the replica count (minReplicaCount..maxReplicaCount); remove replicas, or set keda.enabled=false for fixed replicas" $pool) -}}
{{- end -}}
{{- if gt (int $d.maxReplicaCount) $partitions -}}
{{- fail (printf "dispatchers.%s: maxReplicaCount %d is more than the pool's %d partitions (connectors.pools.%s.partitions): a replica beyond them owns nothing; lower maxReplicaCount or raise the partitions (docs/deploy.md, Sizing)" $pool (int $d.maxReplicaCount) $partitions $pool) -}}
{{- end -}}
{{- if gt (int $d.minReplicaCount) (int $d.maxReplicaCount) -}}
{{- fail (printf "dispatchers.%s: minReplicaCount %d is more than maxReplicaCount %d" $pool (int $d.minReplicaCount) (int $d.maxReplicaCount)) -}}
{{- end -}}
{{- else -}}
{{- $replicas := (kindIs "invalid" $d.replicas) | ternary 2 $d.replicas | int -}}
{{- if gt $replicas $partitions -}}
{{- fail (printf "dispatchers.%s: replicas %d is more than the pool's %d partitions (connectors.pools.%s.partitions): a replica beyond them owns nothing" $pool $replicas $partitions $pool) -}}
{{- end -}}
{{- end -}}
{{- $timeout := include "okta-bridge.poolTimeout" (dict "ctx" $ "pool" $pool) | float64 -}}
{{- if lt (float64 $d.terminationGracePeriodSeconds) (addf $timeout 15) -}}
{{- fail (printf "dispatchers.%s: terminationGracePeriodSeconds %v is shorter than a drain and the partition release (the pool's longest timeout_s %v + 15 s): a stopped replica would be killed mid-request" $pool $d.terminationGracePeriodSeconds $timeout) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.console.enabled .Values.console.ingress.enabled (not .Values.console.ingress.host) -}}
{{- fail "console.ingress.host is required with console.ingress.enabled=true: the name people open the console at (e.g. bridge-console.example.com)" -}}
{{- end -}}
{{- if .Values.console.enabled -}}
{{- $public := urlParse (include "okta-bridge.consolePublicUrl" .) -}}
{{- if and (eq $public.scheme "http") (not (has $public.hostname (list "localhost" "127.0.0.1" "::1"))) (not .Values.console.allowInsecureHttp) -}}
{{- fail (printf "the console's public URL would be http://%s, which the console refuses (its session cookies and the OIDC redirect need https): add console.ingress.tls, set console.publicUrl to the https:// address your load balancer serves, or console.allowInsecureHttp=true" $public.host) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.keda.enabled (not (.Capabilities.APIVersions.Has "keda.sh/v1alpha1")) -}}
{{- fail "keda.enabled=true but the cluster has no KEDA (keda.sh/v1alpha1): install KEDA 2.13+ or set keda.enabled=false (fixed dispatcher replicas)" -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled (not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) -}}
{{- fail "serviceMonitor.enabled=true but the cluster has no Prometheus Operator (monitoring.coreos.com/v1): install it or set serviceMonitor.enabled=false" -}}
{{- end -}}
{{- end -}}

{{/* Environment of every bridge container: (dict "ctx" $ "service" "queue-poller"). */}}
{{- define "okta-bridge.env" -}}
{{- $v := .ctx.Values -}}
- name: OTEL_SERVICE_NAME
  value: {{ .service | quote }}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
{{- if not .noOkta }}
- name: OKTA_ORG_URL                # the org the state in MongoDB belongs to (every service but the audit-recorder)
  value: {{ $v.okta.orgUrl | quote }}
{{- end }}
- name: MONGODB_DB
  value: {{ $v.mongodb.database | quote }}
- name: CONNECTORS_FILE
  value: /etc/okta-bridge/connectors.yaml
- name: BROKER_DECLARE              # the topology hook declared everything: the services only check it
  value: "false"
- name: METRICS_PORT
  value: {{ $v.metricsPort | quote }}
- name: LOG_LEVEL
  value: {{ $v.logLevel | quote }}
{{- if $v.otel.endpoint }}
- name: OTEL_TRACES_EXPORTER
  value: otlp
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $v.otel.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $v.otel.protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $v.otel.sampler | quote }}
{{- else }}
- name: OTEL_TRACES_EXPORTER
  value: none
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  {{- $attrs := "k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME)" }}
  {{- if $v.otel.resourceAttributes }}{{ $attrs = printf "%s,%s" $attrs $v.otel.resourceAttributes }}{{ end }}
  value: {{ $attrs | quote }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Settings of one service (a map NAME: value) as EnvVars. */}}
{{- define "okta-bridge.envMap" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* The secret files every container reads from /run/secrets (the image's entrypoint makes them variables):
     (dict "ctx" $ "rabbitmq" "<secret>" "okta" true "targets" true "auditApi" true). */}}
{{- define "okta-bridge.secretsVolume" -}}
{{- $v := .ctx.Values -}}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ .rabbitmq | default $v.rabbitmq.existingSecret }}
          items: [{key: RABBITMQ_URL, path: RABBITMQ_URL}]
      {{- if not .noMongo }}
      - secret:
          name: {{ $v.mongodb.existingSecret }}
          items: [{key: MONGODB_URL, path: MONGODB_URL}]
      {{- end }}
      {{- if .okta }}
      - secret:
          name: {{ $v.okta.existingSecret }}
          {{- if eq $v.okta.auth "oauth" }}
          items: [{key: OKTA_PRIVATE_KEY, path: OKTA_PRIVATE_KEY}]
          {{- else }}
          items: [{key: OKTA_API_TOKEN, path: OKTA_API_TOKEN}]
          {{- end }}
      {{- end }}
      {{- if .targets }}
      - secret:
          name: {{ $v.targets.existingSecret }}   # every key: a connector's value_env / username_env / password_env
      {{- end }}
      {{- if .auditApi }}
      - secret:
          name: {{ $v.auditRecorder.apiTokensSecret }}
          items: [{key: API_TOKENS, path: API_TOKENS}]
      {{- end }}
      {{- if .consoleOidc }}
      - secret:
          name: {{ $v.console.oidc.existingSecret }}
          items: [{key: CONSOLE_OIDC_CLIENT_SECRET, path: CONSOLE_OIDC_CLIENT_SECRET}]
      {{- end }}
{{- end -}}

{{/* The console's address as people open it (CONSOLE_PUBLIC_URL): console.publicUrl, else the Ingress's host, else
     a port-forward's. */}}
{{- define "okta-bridge.consolePublicUrl" -}}
{{- $c := .Values.console -}}
{{- if $c.publicUrl -}}
{{- $c.publicUrl | trimSuffix "/" -}}
{{- else if and $c.ingress.enabled $c.ingress.host -}}
{{- printf "%s://%s" ($c.ingress.tls | empty | ternary "http" "https") $c.ingress.host -}}
{{- else -}}
{{- printf "http://localhost:%d" (int $c.port) -}}
{{- end -}}
{{- end -}}

{{/* Okta settings of the services that call Okta. */}}
{{- define "okta-bridge.oktaEnv" -}}
{{- $o := .Values.okta -}}
- name: OKTA_MAX_CONCURRENT_REQUESTS
  value: {{ $o.maxConcurrentRequests | quote }}
{{- if eq $o.auth "oauth" }}
- name: OKTA_CLIENT_ID
  value: {{ $o.clientId | quote }}
- name: OKTA_DPOP
  value: {{ $o.dpop | quote }}
{{- with $o.keyId }}
- name: OKTA_KEY_ID
  value: {{ . | quote }}
{{- end }}
{{- else }}
- name: OKTA_API_TOKEN_ID
  value: {{ $o.apiTokenId | quote }}
{{- end }}
{{- end -}}

{{/* Probes on the metrics port (METRICS_PORT): alive, ready, and time to start. */}}
{{- define "okta-bridge.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: metrics}
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /healthz, port: metrics}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: metrics}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end -}}

{{/* Pod-level settings shared by every workload. */}}
{{- define "okta-bridge.podCommon" -}}
serviceAccountName: {{ include "okta-bridge.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}

{{- end -}}

{{/* Container-level mounts shared by every bridge container. */}}
{{- define "okta-bridge.mounts" -}}
- {name: tmp, mountPath: /tmp}
- {name: secrets, mountPath: /run/secrets, readOnly: true}
- {name: connectors, mountPath: /etc/okta-bridge, readOnly: true}
{{- end -}}

{{- define "okta-bridge.podAnnotations" -}}
checksum/connectors: {{ include "okta-bridge.connectorsFile" . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Replicas of one component spread over nodes (soft), unless topologySpreadConstraints is given:
     (dict "ctx" $ "component" "queue-poller"). */}}
{{- define "okta-bridge.spread" -}}
topologySpreadConstraints:
{{- if .ctx.Values.topologySpreadConstraints }}
  {{- toYaml .ctx.Values.topologySpreadConstraints | nindent 2 }}
{{- else }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "okta-bridge.selector" . | nindent 8 }}
{{- end }}
{{- end -}}
