package trafficmgr

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the traffic manager's Prometheus series, in a registry of its
// own so that several managers (tests) never share state.
type metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	retries       *prometheus.CounterVec
	resumes       *prometheus.CounterVec
	redirects     *prometheus.CounterVec
	uploadsLost   *prometheus.CounterVec
	routeChanges  *prometheus.CounterVec
	route         *prometheus.GaugeVec
	regionHealthy *prometheus.GaugeVec
	regionLatency *prometheus.GaugeVec
	nodeHealthy   *prometheus.GaugeVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "georeg_trafficmgr_requests_total",
			Help: "Client requests by listener location, region that answered (none: the traffic manager did), method and status class.",
		}, []string{"location", "region", "method", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "georeg_trafficmgr_retries_total",
			Help: "Requests sent again to another node or region after a failure the client did not see.",
		}, []string{"location"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "georeg_trafficmgr_resumes_total",
			Help: "Blob downloads cut mid-stream, by outcome: resumed from another node with a Range request, or aborted.",
		}, []string{"location", "outcome"}),
		redirects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "georeg_trafficmgr_blob_redirects_total",
			Help: "Blob downloads answered 307 to a node's data endpoint (the bytes did not pass through the traffic manager).",
		}, []string{"location", "region"}),
		uploadsLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "georeg_trafficmgr_upload_sessions_lost_total",
			Help: "Requests for an upload session whose node was unreachable (answered BLOB_UPLOAD_UNKNOWN).",
		}, []string{"location"}),
		routeChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "georeg_trafficmgr_route_changes_total",
			Help: "Changes of a location's current region by reason: failover, failback or latency.",
		}, []string{"location", "reason"}),
		route: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "georeg_trafficmgr_route",
			Help: "1 for the region a location is routed to now, 0 for the others.",
		}, []string{"location", "region"}),
		regionHealthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "georeg_trafficmgr_region_healthy",
			Help: "1 when at least one node of the region passes its probes from the location.",
		}, []string{"location", "region"}),
		regionLatency: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "georeg_trafficmgr_region_latency_seconds",
			Help: "Lowest smoothed probe round trip among the region's healthy nodes from the location.",
		}, []string{"location", "region"}),
		nodeHealthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "georeg_trafficmgr_node_healthy",
			Help: "1 when the zone node passes its probes from the location.",
		}, []string{"location", "region", "zone"}),
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.retries, m.resumes, m.redirects, m.uploadsLost, m.routeChanges, m.route,
		m.regionHealthy, m.regionLatency, m.nodeHealthy)
	return m
}
