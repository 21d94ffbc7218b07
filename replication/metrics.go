package replication

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

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
	// OfferBytes, OffersInFlight and DeliverySeconds are per peer region
	// this node offers to; TransfersInFlight per peer region it fetches
	// from. Events and bytes per second are the rates of EventsSent and
	// BytesReceived.
	OfferBytes        *prometheus.CounterVec
	OffersInFlight    *prometheus.GaugeVec
	DeliverySeconds   *prometheus.HistogramVec
	TransfersInFlight *prometheus.GaugeVec
	// EventsDropped counts the events dropped unsent past the outbox's
	// bound, per peer region.
	EventsDropped *prometheus.CounterVec
	// EarlyBlobs counts the early blob offers this node's region acted on
	// as its leader, by outcome: started (a fetch began) or declined (too
	// many early fetches ran).
	EarlyBlobs *prometheus.CounterVec
}

// NewMetrics creates the counters and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		BytesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "georeg_replication_bytes_sent_total", Help: "Blob bytes this node sent to peer regions (streamed, or inline in offered pushes).",
		}, []string{"peer"}),
		BytesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "georeg_replication_bytes_received_total", Help: "Blob bytes this node received from peer regions (fetched, or inline in offered pushes).",
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
		OfferBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "georeg_replication_offer_bytes_total", Help: "Manifest bytes of the events peer regions acknowledged (offers carry manifests; blobs are fetched).",
		}, []string{"peer"}),
		OffersInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "georeg_replication_offers_in_flight", Help: "Batches of events offered to a peer region and not answered yet.",
		}, []string{"peer"}),
		DeliverySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "georeg_replication_delivery_seconds", Help: "Time from a write to its peer region's acknowledgment, for the newest event of each batch acknowledged.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800},
		}, []string{"peer"}),
		TransfersInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "georeg_replication_transfers_in_flight", Help: "Blob fetches from a peer region running on this node.",
		}, []string{"peer"}),
		EventsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "georeg_replication_events_dropped_total", Help: "Outbox events dropped unsent because a peer region left them unacknowledged past the outbox's bound; the peer re-syncs through anti-entropy.",
		}, []string{"peer"}),
		EarlyBlobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "georeg_replication_early_blobs_total", Help: "Blobs a peer region offered as they landed, before their manifest, by what this region's leader did: started a fetch, or declined (too many running).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.EarlyBlobs, m.EventsDropped, m.BytesSent, m.BytesReceived, m.BytesDeduped, m.ReadThrough, m.Conflicts,
		m.EventsSent, m.OutboxBacklog, m.LagSeconds, m.AntiEntropyFix,
		m.OfferBytes, m.OffersInFlight, m.DeliverySeconds, m.TransfersInFlight)
	return m
}

// rateWindow is the window of the per-second rates in PeerStatus.
const rateWindow = 10

// rate counts something per second over the last rateWindow whole
// seconds.
type rate struct {
	secs [rateWindow + 1]int64
	n    [rateWindow + 1]float64
}

func (r *rate) add(now time.Time, n float64) {
	s := now.Unix()
	i := s % int64(len(r.secs))
	if r.secs[i] != s {
		r.secs[i], r.n[i] = s, 0
	}
	r.n[i] += n
}

// perSecond is the mean over the last rateWindow whole seconds.
func (r *rate) perSecond(now time.Time) float64 {
	s := now.Unix()
	var sum float64
	for i, t := range r.secs {
		if t < s && t >= s-rateWindow {
			sum += r.n[i]
		}
	}
	return sum / rateWindow
}

// peerLive is what this node measures of one peer region as it goes: the
// rates and work in flight PeerStatus reports.
type peerLive struct {
	events            rate
	blobBytes         rate
	offersInFlight    int
	transfersInFlight int
	sync              syncProgress
}

// syncProgress is the progress of the last anti-entropy round against a
// peer that found repositories to reconcile.
type syncProgress struct {
	started, ended   time.Time // ended is zero while the round runs
	repos, reposDone int
	manifests        int // pulled so far
	// tags and bytes are the peer's live tags and linked blob bytes in
	// the repositories to reconcile; the done counts are those of the
	// repositories reconciled.
	tags, tagsDone   int64
	bytes, bytesDone int64
}

// eta is the time the round still needs at its pace so far (0 when it
// ended or has no pace yet), from the tags done of total (the repositories
// when they hold none).
func (s syncProgress) eta(now time.Time) time.Duration {
	if !s.ended.IsZero() || s.reposDone == 0 || s.reposDone >= s.repos {
		return 0
	}
	done, total := float64(s.reposDone), float64(s.repos)
	if s.tags > 0 && s.tagsDone > 0 {
		done, total = float64(s.tagsDone), float64(s.tags)
	}
	if done >= total {
		return 0
	}
	elapsed := now.Sub(s.started)
	return time.Duration(float64(elapsed) / done * (total - done))
}
