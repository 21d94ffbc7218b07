package control

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/controlpb"
)

func timeOf(ts *timestamppb.Timestamp) time.Time { return proto.Time(ts) }

func settingsToProto(s access.Settings) *controlpb.RegistrySettings {
	return &controlpb.RegistrySettings{AuthEnabled: s.AuthEnabled, AdminEnabled: s.AdminEnabled, AnonymousPullEnabled: s.AnonymousPull}
}

func settingsFromProto(s *controlpb.RegistrySettings) access.Settings {
	return access.Settings{AuthEnabled: s.GetAuthEnabled(), AdminEnabled: s.GetAdminEnabled(), AnonymousPull: s.GetAnonymousPullEnabled()}
}

func scopeMapToProto(m access.ScopeMap) *controlpb.ScopeMap {
	out := &controlpb.ScopeMap{Name: m.Name, Description: m.Description, BuiltIn: m.BuiltIn, Created: proto.Timestamp(m.Created)}
	for _, p := range m.Permissions {
		pp := &controlpb.Permission{Repository: p.Pattern}
		for _, a := range p.Actions {
			pp.Actions = append(pp.Actions, string(a))
		}
		out.Repositories = append(out.Repositories, pp)
	}
	return out
}

func scopeMapFromProto(m *controlpb.ScopeMap) access.ScopeMap {
	out := access.ScopeMap{Name: m.GetName(), Description: m.GetDescription(), BuiltIn: m.GetBuiltIn(), Created: proto.Time(m.GetCreated())}
	for _, p := range m.GetRepositories() {
		ap := access.Permission{Pattern: p.GetRepository()}
		for _, a := range p.GetActions() {
			ap.Actions = append(ap.Actions, access.Action(a))
		}
		out.Permissions = append(out.Permissions, ap)
	}
	return out
}

// tokenToProto converts a token; the password hashes travel only between
// regions (withHashes), never to the CLI.
func tokenToProto(t access.Token, withHashes bool) *controlpb.Token {
	out := &controlpb.Token{Name: t.Name, ScopeMap: t.ScopeMap, Status: string(t.Status), Created: proto.Timestamp(t.Created), Version: t.Version}
	for _, p := range t.Passwords {
		pp := &controlpb.Password{Name: p.Name, Created: proto.Timestamp(p.Created), Expiry: proto.Timestamp(p.Expiry)}
		if withHashes {
			pp.Hash = p.Hash
		}
		out.Passwords = append(out.Passwords, pp)
	}
	return out
}

func tokenFromProto(t *controlpb.Token) access.Token {
	out := access.Token{Name: t.GetName(), ScopeMap: t.GetScopeMap(), Status: access.Status(t.GetStatus()), Created: proto.Time(t.GetCreated()), Version: t.GetVersion()}
	for _, p := range t.GetPasswords() {
		out.Passwords = append(out.Passwords, access.Password{Name: p.GetName(), Hash: p.GetHash(), Created: proto.Time(p.GetCreated()), Expiry: proto.Time(p.GetExpiry())})
	}
	return out
}

func accessToProto(st meta.AccessState) *controlpb.AccessState {
	out := &controlpb.AccessState{Version: st.Version, Settings: settingsToProto(st.Settings)}
	for _, m := range st.ScopeMaps {
		out.ScopeMaps = append(out.ScopeMaps, scopeMapToProto(m))
	}
	for _, t := range st.Tokens {
		out.Tokens = append(out.Tokens, tokenToProto(t, true))
	}
	for _, k := range st.Keys {
		out.SigningKeys = append(out.SigningKeys, &controlpb.SigningKey{Id: k.ID, Seed: k.Seed, Created: proto.Timestamp(k.Created)})
	}
	if st.Admin != nil {
		out.Admin = tokenToProto(*st.Admin, true)
	}
	return out
}

func accessFromProto(st *controlpb.AccessState) meta.AccessState {
	out := meta.AccessState{Version: st.GetVersion(), Settings: settingsFromProto(st.GetSettings())}
	for _, m := range st.GetScopeMaps() {
		out.ScopeMaps = append(out.ScopeMaps, scopeMapFromProto(m))
	}
	for _, t := range st.GetTokens() {
		out.Tokens = append(out.Tokens, tokenFromProto(t))
	}
	for _, k := range st.GetSigningKeys() {
		out.Keys = append(out.Keys, access.SigningKey{ID: k.GetId(), Seed: k.GetSeed(), Created: proto.Time(k.GetCreated())})
	}
	if st.GetAdmin() != nil {
		a := tokenFromProto(st.GetAdmin())
		out.Admin = &a
	}
	return out
}
