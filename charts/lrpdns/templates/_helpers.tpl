{{/*
lrpdns.flags prints "- --FLAG=VALUE" for each key of .values named in
.flags (key: flag) that is set, false and 0 included.
*/}}
{{- define "lrpdns.flags" -}}
{{- $values := .values -}}
{{- range $key, $flag := .flags }}
{{- if hasKey $values $key }}
- --{{ $flag }}={{ index $values $key }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "lrpdns.image" -}}
image: {{ printf "%s:%s" .repository .tag | quote }}
{{- with .pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end -}}

{{/* The GOMEMLIMIT variable: a fixed value, or the container's memory limit. */}}
{{- define "lrpdns.gomemlimit" -}}
- name: GOMEMLIMIT
{{- if . }}
  value: {{ . | quote }}
{{- else }}
  valueFrom:
    resourceFieldRef:
      resource: limits.memory
{{- end }}
{{- end -}}
