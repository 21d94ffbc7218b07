package control

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/controlpb"
)

// connectedError turns a refusal of a connected registry command into a
// gRPC status.
func connectedError(err error) error {
	if err == nil {
		return nil
	}
	msg := logPrefix.ReplaceAllString(err.Error(), "")
	switch {
	case errors.Is(err, meta.ErrConnectedUnknown):
		return status.Error(codes.NotFound, msg)
	case errors.Is(err, meta.ErrConnectedConflict):
		return status.Error(codes.FailedPrecondition, msg)
	case errors.Is(err, connected.ErrParent):
		return status.Error(codes.InvalidArgument, msg)
	}
	return accessError(err)
}

func (p *Plane) connectedRegistry(name string) (connected.Registry, error) {
	all, err := p.cfg.Meta.ConnectedRegistries()
	if err != nil {
		return connected.Registry{}, status.Error(codes.Unavailable, err.Error())
	}
	for _, r := range all {
		if r.Name == name {
			return r, nil
		}
	}
	return connected.Registry{}, status.Errorf(codes.NotFound, "no connected registry %q", name)
}

// PutConnectedRegistry implements controlpb.ControlServer.
func (p *Plane) PutConnectedRegistry(ctx context.Context, req *controlpb.PutConnectedRegistryRequest) (*controlpb.ConnectedRegistry, error) {
	if err := p.manage(ctx); err != nil {
		return nil, err
	}
	r, err := connectedFromProto(req.GetRegistry())
	if err != nil {
		return nil, connectedError(err)
	}
	cmd := meta.PutConnectedRegistry{Registry: r, Create: req.GetCreate()}
	if req.GetCreate() {
		now := time.Now().UTC()
		r.Created = now
		cmd.Registry = r
		// The sync token has no password until get-settings generates
		// one: a connection string is shown once, when it is asked for.
		cmd.SyncToken = &access.Token{Name: connected.SyncTokenName(r.Name), Status: access.Enabled, Created: now}
	}
	if err := r.Validate(); err != nil {
		return nil, connectedError(err)
	}
	if err := p.cfg.Meta.Apply(ctx, cmd); err != nil {
		return nil, connectedError(err)
	}
	p.loadAccess()
	out, err := p.connectedRegistry(r.Name)
	if err != nil {
		return nil, err
	}
	return connectedToProto(out), nil
}

// DeleteConnectedRegistry implements controlpb.ControlServer.
func (p *Plane) DeleteConnectedRegistry(ctx context.Context, req *controlpb.DeleteConnectedRegistryRequest) (*controlpb.ConnectedRegistry, error) {
	if err := p.manage(ctx); err != nil {
		return nil, err
	}
	r, err := p.connectedRegistry(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := p.cfg.Meta.Apply(ctx, meta.DeleteConnectedRegistry{Name: r.Name, Force: req.GetForce()}); err != nil {
		return nil, connectedError(err)
	}
	p.loadAccess()
	return connectedToProto(r), nil
}

// ListConnectedRegistries implements controlpb.ControlServer.
func (p *Plane) ListConnectedRegistries(ctx context.Context, _ *controlpb.ListAccessRequest) (*controlpb.ListConnectedRegistriesResponse, error) {
	if err := p.manage(ctx); err != nil {
		return nil, err
	}
	all, err := p.cfg.Meta.ConnectedRegistries()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	out := &controlpb.ListConnectedRegistriesResponse{}
	for _, r := range all {
		out.Registries = append(out.Registries, connectedToProto(r))
	}
	return out, nil
}

// DeactivateConnectedRegistry implements controlpb.ControlServer.
func (p *Plane) DeactivateConnectedRegistry(ctx context.Context, req *controlpb.NameRequest) (*controlpb.ConnectedRegistry, error) {
	if err := p.manage(ctx); err != nil {
		return nil, err
	}
	if err := p.cfg.Meta.Apply(ctx, meta.SetConnectedActivation{Name: req.GetName(), Activation: connected.Inactive}); err != nil {
		return nil, connectedError(err)
	}
	r, err := p.connectedRegistry(req.GetName())
	if err != nil {
		return nil, err
	}
	return connectedToProto(r), nil
}

// ConnectedRegistrySettings implements controlpb.ControlServer: it
// replaces one password of the sync token and returns it once.
func (p *Plane) ConnectedRegistrySettings(ctx context.Context, req *controlpb.ConnectedRegistrySettingsRequest) (*controlpb.ConnectedRegistrySettingsResponse, error) {
	if err := p.manage(ctx); err != nil {
		return nil, err
	}
	r, err := p.connectedRegistry(req.GetName())
	if err != nil {
		return nil, err
	}
	pwName := req.GetPassword()
	if pwName == "" {
		pwName = access.Password1
	}
	info, err := p.GenerateCredential(ctx, &controlpb.GenerateCredentialRequest{Name: r.SyncToken, Password: pwName, Expiry: req.GetExpiry()})
	if err != nil {
		return nil, err
	}
	return &controlpb.ConnectedRegistrySettingsResponse{Registry: connectedToProto(r), Secret: info.GetSecrets()[0]}, nil
}

func connectedToProto(r connected.Registry) *controlpb.ConnectedRegistry {
	out := &controlpb.ConnectedRegistry{
		Name: r.Name, Parent: r.Parent, Mode: string(r.Mode), Repositories: r.Repositories, ClientTokens: r.ClientTokens,
		SyncToken: r.SyncToken, LogLevel: r.LogLevel, Notifications: r.Notifications, Activation: string(r.Activation),
		Created: proto.Timestamp(r.Created),
	}
	if !r.ActivatedAt.IsZero() {
		out.ActivatedAt = proto.Timestamp(r.ActivatedAt)
	}
	out.ConnectionState = r.ConnectionState(time.Now())
	if !r.Seen.IsZero() {
		out.LastSeen = proto.Timestamp(r.Seen)
	}
	if !r.Reported.LastSync.IsZero() {
		out.LastSync = proto.Timestamp(r.Reported.LastSync)
	}
	out.LastError = r.Reported.LastError
	out.SyncSchedule, out.SyncWindow, out.SyncMessageTtl = r.SyncSchedule, r.SyncWindow, r.SyncMessageTTL
	if sched, err := connected.ParseSchedule(r.SyncSchedule, r.SyncWindow); err == nil && !sched.Continuous() {
		if start, end, _ := sched.At(time.Now()); !start.IsZero() {
			out.NextSyncWindowStart, out.NextSyncWindowEnd = proto.Timestamp(start), proto.Timestamp(end)
		}
	}
	out.PendingWrites, out.TagConflicts = r.Reported.Pending, r.Reported.Conflicts
	return out
}

// connectedFromProto returns the definition a user gave: mode parsed,
// log level defaulted.
func connectedFromProto(r *controlpb.ConnectedRegistry) (connected.Registry, error) {
	mode, err := connected.ParseMode(r.GetMode())
	if err != nil {
		return connected.Registry{}, err
	}
	out := connected.Registry{
		Name: r.GetName(), Parent: r.GetParent(), Mode: mode, Repositories: r.GetRepositories(), ClientTokens: r.GetClientTokens(),
		LogLevel: r.GetLogLevel(), Notifications: r.GetNotifications(),
		SyncSchedule: r.GetSyncSchedule(), SyncWindow: r.GetSyncWindow(), SyncMessageTTL: r.GetSyncMessageTtl(),
	}
	if out.LogLevel == "" {
		out.LogLevel = "Information"
	}
	return out, nil
}
