package nodecache

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lrpdns/lrpdns/pkg/nodecache/internal/front"
)

// The node-cache's own metrics, served by CoreDNS's prometheus plugin from
// the default registry next to CoreDNS's.
var (
	configErrors = prometheus.NewCounter(prometheus.CounterOpts(opts("config_errors_total",
		"Input changes refused (parse, validation or reload error); the last good configuration kept serving.")))
	configLastReloadOK = prometheus.NewGauge(prometheus.GaugeOpts(opts("config_last_reload_successful",
		"1 if the current inputs are being served, 0 if they were refused.")))
	configGeneration = prometheus.NewGauge(prometheus.GaugeOpts(opts("config_generation",
		"Configurations applied since start, the first being 1.")))
	configInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("config_info",
		"The active Corefile: hash is the first 12 hex digits of its SHA-256.")), []string{"hash"})

	registerOnce sync.Once

	// frontMetrics reads the front of the process's node-cache.
	frontMetrics = &frontReader{}
	tcpOpen      = prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("tcp_connections",
		"Open TCP connections from clients.")),
		frontMetrics.read(func(f *front.Front) int64 { return f.OpenTCP() }))
	tcpRefused = prometheus.NewCounterFunc(prometheus.CounterOpts(opts("tcp_connections_refused_total",
		"TCP connections closed at once because --max-tcp-connections were open.")),
		frontMetrics.read(func(f *front.Front) int64 { return int64(f.Refused()) }))
	udpPaused = prometheus.NewCounterFunc(prometheus.CounterOpts(opts("udp_reads_paused_total",
		"UDP reads that waited because too many queries were in flight (overload: the kernel drops the excess).")),
		frontMetrics.read(func(f *front.Front) int64 { return int64(f.Paused()) }))
)

// opts names a metric of the node-cache: lrpdns_node_cache_<name>.
func opts(name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: "lrpdns", Subsystem: "node_cache", Name: name, Help: help}
}

type frontReader struct {
	mu sync.Mutex
	f  *front.Front
}

func (r *frontReader) set(f *front.Front) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.f = f
}

// read is a metric's value function: what value says of the current
// front, 0 before there is one.
func (r *frontReader) read(value func(*front.Front) int64) func() float64 {
	return func() float64 {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.f == nil {
			return 0
		}
		return float64(value(r.f))
	}
}

func registerMetrics() {
	registerOnce.Do(func() {
		prometheus.MustRegister(configErrors, configLastReloadOK, configGeneration, configInfo, tcpOpen, tcpRefused, udpPaused)
	})
}
