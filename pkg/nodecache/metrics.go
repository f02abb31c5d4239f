package nodecache

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
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
)

func registerMetrics() {
	registerOnce.Do(func() {
		prometheus.MustRegister(configErrors, configLastReloadOK, configGeneration, configInfo)
	})
}
