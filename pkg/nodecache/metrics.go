package nodecache

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lrpdns/lrpdns/pkg/nodecache/internal/front"
)

// The node-cache's own metrics, served by CoreDNS's prometheus plugin from
// the default registry next to CoreDNS's.
var (
	configErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "lrpdns", Subsystem: "node_cache", Name: "config_errors_total",
		Help: "Input changes refused (parse, validation or reload error); the last good configuration kept serving.",
	})
	configLastReloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "lrpdns", Subsystem: "node_cache", Name: "config_last_reload_successful",
		Help: "1 if the current inputs are being served, 0 if they were refused.",
	})
	configGeneration = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "lrpdns", Subsystem: "node_cache", Name: "config_generation",
		Help: "Configurations applied since start, the first being 1.",
	})
	configInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "lrpdns", Subsystem: "node_cache", Name: "config_info",
		Help: "The active Corefile: hash is the first 12 hex digits of its SHA-256.",
	}, []string{"hash"})

	registerOnce sync.Once

	// frontMetrics reads the front of the process's node-cache.
	frontMetrics = &frontReader{}
	tcpOpen      = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "lrpdns", Subsystem: "node_cache", Name: "tcp_connections",
		Help: "Open TCP connections from clients.",
	}, func() float64 { return float64(frontMetrics.get(func(f *front.Front) int64 { return f.OpenTCP() })) })
	tcpRefused = prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "lrpdns", Subsystem: "node_cache", Name: "tcp_connections_refused_total",
		Help: "TCP connections closed at once because --max-tcp-connections were open.",
	}, func() float64 {
		return float64(frontMetrics.get(func(f *front.Front) int64 { return int64(f.Refused()) }))
	})
	udpPaused = prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "lrpdns", Subsystem: "node_cache", Name: "udp_reads_paused_total",
		Help: "UDP reads that waited because too many queries were in flight (overload: the kernel drops the excess).",
	}, func() float64 {
		return float64(frontMetrics.get(func(f *front.Front) int64 { return int64(f.Paused()) }))
	})
)

type frontReader struct {
	mu sync.Mutex
	f  *front.Front
}

func (r *frontReader) set(f *front.Front) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.f = f
}

func (r *frontReader) get(read func(*front.Front) int64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0
	}
	return read(r.f)
}

func registerMetrics() {
	registerOnce.Do(func() {
		prometheus.MustRegister(configErrors, configLastReloadOK, configGeneration, configInfo, tcpOpen, tcpRefused, udpPaused)
	})
}
