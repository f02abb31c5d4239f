package corefile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// Forwards fail fast once every upstream of a block fails its health check
// (an NS query each 0.5 s, for a name the upstream answers itself: the
// cluster domain, the stub domain, or the root for the node's resolvers;
// any answer is healthy, only silence is not). Then an expired name is
// served stale at once instead of after the 1 s verify, and a miss fails
// at once instead of after the forward's timeouts.
//
// corefileTemplate is one block for the cluster domain and reverse zones
// (forwarded to the cluster DNS, over TCP by default), one per stub domain
// and zone, and the root zone forwarded to the node's resolvers.
// NoIPv6Lookups keeps off the cluster block: the cluster DNS answers its
// names itself, and an empty AAAA answer there would end a search-path
// walk early for resolvers that take NODATA as "the name exists". health
// and ready are process-wide and so live in the first block only.
var corefileTemplate = template.Must(template.New("Corefile").Funcs(template.FuncMap{
	"servers": servers,
	"dur":     dur,
	"secs":    func(d time.Duration) int64 { return int64(d / time.Second) },
	"hotArgs": hotArgs,
}).Parse(`# Rendered by node-cache from its flags, resolv.conf and the kube-dns ConfigMap.
{{ .ClusterZones }} {
{{- template "common" . }}
    health {{ .HealthAddr }}{{ if .Lameduck }} {
        lameduck {{ dur .Lameduck }}
    }{{ end }}
    ready {{ .ReadyAddr }}
    forward . {{ servers .ClusterDNS }} {
{{- template "forward" .ClusterForward }}
        health_check 0.5s domain {{ .ClusterDomain }}.
        failfast_all_unhealthy_upstreams
    }
}
{{- range .Stubs }}

{{ .Zone }} {
{{- template "common" .Common }}
{{- template "noipv6" .Common }}
    forward . {{ servers .Servers }} {
{{- template "forward" .Forward }}
        health_check 0.5s domain {{ .Domain }}
        failfast_all_unhealthy_upstreams
    }
}
{{- end }}

{{ .RootZone }} {
{{- template "common" . }}
{{- template "noipv6" . }}
    forward . {{ servers .NodeResolvers }} {
{{- template "forward" .ExternalForward }}
        failfast_all_unhealthy_upstreams
    }
}
{{ define "common" }}
    errors
{{- if .LogQueries }}
    log
{{- end }}
{{- if .BindList }}
    bind {{ .BindList }}
{{- end }}
    front
    prometheus {{ .MetricsAddr }}
    cache {
        success {{ .Cache.SuccessCapacity }} {{ secs .Cache.SuccessTTL }}
        denial {{ .Cache.DenialCapacity }} {{ secs .Cache.DenialTTL }}
{{- if .Cache.Prefetch }}
        prefetch {{ .Cache.PrefetchAmount }}
{{- end }}
{{- if .Cache.ServeStale }}
        serve_stale {{ dur .Cache.StaleMaxAge }} {{ .Cache.StaleMode }}{{ if eq .Cache.StaleMode "verify" }} {{ dur .Cache.StaleVerifyTimeout }}{{ end }} {{ secs .Cache.StaleTTL }}s
{{- end }}
    }
{{- if and .Cache.HotPath (not .LogQueries) }}
    hot {{ hotArgs .Cache }}
{{- end }}
    loopguard
{{- end }}
{{- define "noipv6" }}
{{- if .NoIPv6Lookups }}
    template ANY AAAA {
        rcode NOERROR
    }
{{- end }}
{{- end }}
{{- define "forward" }}
{{- if eq .Protocol "tcp" }}
        force_tcp
{{- else if eq .Protocol "udp" }}
        prefer_udp
{{- end }}
{{- if ne .Policy "random" }}
        policy {{ .Policy }}
{{- end }}
        max_concurrent {{ .MaxConcurrent }}
{{- end }}`))

// hotArgs are the hot directive's arguments for c: the TTL left at which
// a name goes back to the chain (the cache plugin prefetches in the last
// 10% of an answer's TTL, rounded up, and the hot path counts a second
// more), the cache hits a name needs before it is answered there (the
// prefetch amount), and, with serve_stale immediate, the TTL of stale
// answers, which it never learns. (In verify mode the cache passes a query
// on before it answers stale, so the hot path knows.)
func hotArgs(c Cache) string {
	handBack, warm := int64(0), 1
	if c.Prefetch {
		longest := max(c.SuccessTTL, c.DenialTTL)
		handBack = (int64(longest/time.Second)+9)/10 + 1
		warm = c.PrefetchAmount
	}
	stale := int64(0)
	if c.ServeStale && c.StaleMode == StaleImmediate {
		stale = int64(c.StaleTTL / time.Second)
	}
	return fmt.Sprintf("%d %d %d", handBack, warm, stale)
}

type view struct {
	*Config
	ClusterZones string
	RootZone     string
	BindList     string
	Stubs        []stubView
}

type stubView struct {
	Zone    string
	Domain  string // fully qualified, for the health check
	Servers []netip.AddrPort
	Forward Forward
	Common  view // the shared directives, with the stub's share of the cache
}

// StubCacheBudget is how many answers of each kind (success, denial) the
// stub domains' and zones' caches hold together: each stub domain is a server block
// with its own cache, so with 32 stub domains at the main blocks' capacity
// a client asking new names in each could make the cache hold 32 times
// the memory (make soak measured 134 MiB, past the pod's limit, before
// they were filled). Each stub domain gets an even share, at most the main
// capacity and at least 256 (CoreDNS's cache shard).
const StubCacheBudget = 16384

func stubCapacity(main, stubs int) int {
	return min(main, max(256, StubCacheBudget/max(stubs, 1)))
}

// Render validates c and renders it. The output depends only on c: stub
// domains are sorted, and nothing else is reordered.
func Render(c *Config) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	port := ":" + strconv.Itoa(c.Port)
	v := view{Config: c, RootZone: "." + port}
	zones := []string{Zone(c.ClusterDomain), "in-addr.arpa.", "ip6.arpa."}
	for i := range zones {
		zones[i] = strings.TrimSuffix(zones[i], ".") + port
	}
	v.ClusterZones = strings.Join(zones, " ")
	bind := make([]string, len(c.Bind))
	for i, a := range c.Bind {
		bind[i] = a.String()
	}
	v.BindList = strings.Join(bind, " ")
	stubConfig := *c
	blocks := len(c.StubDomains) + len(c.Zones)
	stubConfig.Cache.SuccessCapacity = stubCapacity(c.Cache.SuccessCapacity, blocks)
	stubConfig.Cache.DenialCapacity = stubCapacity(c.Cache.DenialCapacity, blocks)
	common := v
	common.Config = &stubConfig
	add := func(s StubDomain, f Forward) {
		v.Stubs = append(v.Stubs, stubView{Zone: strings.TrimSuffix(Zone(s.Domain), ".") + port, Domain: Zone(s.Domain), Servers: s.Servers, Forward: f, Common: common})
	}
	for _, s := range c.StubDomains {
		add(s, c.StubForward)
	}
	for _, z := range c.Zones {
		add(z, z.Forward)
	}
	slices.SortFunc(v.Stubs, func(a, b stubView) int { return strings.Compare(a.Zone, b.Zone) })

	var buf bytes.Buffer
	if err := corefileTemplate.Execute(&buf, v); err != nil {
		return nil, fmt.Errorf("failed to render Corefile: %w", err)
	}
	return buf.Bytes(), nil
}

// Hash identifies a rendered Corefile: the first 12 hex digits of its SHA-256.
func Hash(corefile []byte) string {
	sum := sha256.Sum256(corefile)
	return hex.EncodeToString(sum[:6])
}

// servers joins DNS servers the way forward expects them: IPv6 bracketed.
func servers(s []netip.AddrPort) string {
	out := make([]string, len(s))
	for i, a := range s {
		out[i] = a.String()
	}
	return strings.Join(out, " ")
}

// dur prints a duration in the shortest form time.ParseDuration reads back.
func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	default:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	}
}
