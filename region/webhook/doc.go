// Package webhook delivers a region's webhook events: when an image becomes
// available in the region (pushed there or replicated there) or is deleted,
// every enabled webhook of the region whose actions and scope match gets an
// ACR-shaped JSON event by HTTP POST. Deliveries are at least once: each is
// retried with backoff until the receiver answers 2xx, every attempt is
// recorded through the region's Raft log (so `georeg webhook list-events`
// shows them and a new leader resumes where the old one stopped), and one
// webhook's slow receiver never holds up another's.
package webhook
