package trafficmgr

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
)

// Errors the traffic manager's own code paths branch on.
var (
	// ErrRunning is returned by Run when the Manager already runs.
	ErrRunning = errors.New("traffic manager already running")
	// errNodeDown cancels a request in flight to a node the probes just
	// marked down, so that it is retried or resumed elsewhere.
	errNodeDown = errors.New("node marked down by its health probes")
	// errHeaderTimeout cancels a GET or HEAD whose node sent no response
	// headers within headerTimeout.
	errHeaderTimeout = errors.New("no response headers in time")
)

// writeError answers with the distribution spec's error envelope, for the
// few errors the traffic manager produces itself (every other error comes
// from a node and is passed through unchanged).
func writeError(w http.ResponseWriter, status int, code, message string, detail any) {
	type entry struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Detail  any    `json:"detail,omitempty"`
	}
	b, _ := json.Marshal(struct {
		Errors []entry `json:"errors"`
	}{[]entry{{code, message, detail}}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}
