package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/georeg/georeg/trafficmgr"
)

// writeTrafficmgrConfig writes the traffic manager's configuration for m:
// every region and zone node, and one listener per location.
func writeTrafficmgrConfig(m *Mesh) error {
	cfg := trafficmgr.Config{Home: m.Home}
	for _, r := range m.Regions {
		rc := trafficmgr.RegionConfig{Name: r.Name}
		for _, n := range r.Zones {
			rc.Nodes = append(rc.Nodes, trafficmgr.NodeConfig{Zone: n.Zone, HTTP: n.HTTP})
		}
		cfg.Regions = append(cfg.Regions, rc)
	}
	for _, l := range m.Locations {
		cfg.Listeners = append(cfg.Listeners, trafficmgr.ListenerConfig{Location: l.Name, Addr: l.Addr})
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("chaos: traffic manager config: %w", err)
	}
	p := filepath.Join(m.Dir, TrafficmgrFile)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("chaos: traffic manager config: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("chaos: traffic manager config: %w", err)
	}
	return nil
}

// trafficmgrReport asks the traffic manager at base (its URL) for its
// routing state.
func (c *Controller) trafficmgrReport(ctx context.Context, base string) (*trafficmgr.Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+trafficmgr.StatusPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s answered %s", trafficmgr.StatusPath, resp.Status)
	}
	var st trafficmgr.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}
