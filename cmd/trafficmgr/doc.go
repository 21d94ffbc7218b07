// Command trafficmgr runs the traffic manager: the registry's one client
// endpoint, a reverse proxy in front of every zone node of every region that
// sends each client to the best healthy, enabled region for its location
// and fails over when a zone or region goes down (package trafficmgr).
//
//	trafficmgr --config trafficmgr.json [--data-endpoints=false] [--log-level info]
//
// The configuration names the home region, every region's zone nodes and
// one listener per client location; the first listener is the default
// endpoint. It prints one "serving" line per listener once every listener is
// bound and the first probes have answered, and stops gracefully on SIGINT
// or SIGTERM.
package main
