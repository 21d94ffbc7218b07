package replication

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the replication counters exported on /metrics.
type Metrics struct {
	BytesSent      *prometheus.CounterVec
	BytesReceived  *prometheus.CounterVec
	BytesDeduped   prometheus.Counter
	ReadThrough    *prometheus.CounterVec
	Conflicts      prometheus.Counter
	EventsSent     *prometheus.CounterVec
	OutboxBacklog  *prometheus.GaugeVec
	LagSeconds     *prometheus.GaugeVec
	AntiEntropyFix prometheus.Counter
}

// NewMetrics creates the counters and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		BytesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "georeg_replication_bytes_sent_total", Help: "Blob bytes this node sent to peer regions.",
		}, []string{"peer"}),
		BytesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "georeg_replication_bytes_received_total", Help: "Blob bytes this node fetched from peer regions.",
		}, []string{"peer"}),
		BytesDeduped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "georeg_replication_bytes_deduplicated_total", Help: "Blob bytes a replicated manifest referenced that this region already held, so they were not sent.",
		}),
		ReadThrough: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "georeg_replication_read_through_total", Help: "Manifests and blobs fetched from a peer region to answer a client.",
		}, []string{"kind"}),
		Conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "georeg_replication_conflicts_total", Help: "Replicated tag writes that met a different concurrent write (resolved last-writer-wins).",
		}),
		EventsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "georeg_replication_events_delivered_total", Help: "Outbox events delivered to peer regions.",
		}, []string{"peer"}),
		OutboxBacklog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "georeg_replication_outbox_backlog", Help: "Outbox events a peer region has not acknowledged.",
		}, []string{"peer"}),
		LagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "georeg_replication_lag_seconds", Help: "Age of the oldest event a peer region has not acknowledged.",
		}, []string{"peer"}),
		AntiEntropyFix: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "georeg_replication_anti_entropy_repairs_total", Help: "Manifests, tags and deletes anti-entropy pulled that events had not delivered.",
		}),
	}
	reg.MustRegister(m.BytesSent, m.BytesReceived, m.BytesDeduped, m.ReadThrough, m.Conflicts,
		m.EventsSent, m.OutboxBacklog, m.LagSeconds, m.AntiEntropyFix)
	return m
}
