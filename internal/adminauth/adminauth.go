// Package adminauth is fmgate's admin layer: it authenticates and authorises every call of
// an administrative RPC, confines it to the caller's organisation (and team), and records
// every change it lets through in the audit trail with its before and after.
//
// What each RPC needs is declared on the contract itself (proto/fmgate/admin/v1): the
// method option (fmgate.admin.v1.access) names the permission and the audit action, and the
// field option (fmgate.admin.v1.field_role) marks the request fields that say who acts and
// which team a call is confined to. An administrative RPC without the access option refuses
// every caller.
//
// A call goes through these steps, in order; the first that fails ends it:
//
//  1. Credential: "authorization: Bearer <API key or OIDC token>" metadata (grpc-gateway
//     forwards the HTTP Authorization header as such). Missing: UNAUTHENTICATED.
//  2. Principal: identity's Authenticate, uncached, so that a revoked key or a changed role
//     counts at once. Identity unreachable: UNAVAILABLE (fail closed).
//  3. Permission: the principal holds it organisation-wide (Principal.permissions), or only
//     within its team (Principal.team_permissions). A team-only holder may call an RPC whose
//     request has a FIELD_ROLE_TEAM field, confined to its own team, or a read ("*.read") of
//     organisation-wide resources; nothing else. Else PERMISSION_DENIED naming the
//     permission.
//  4. Tenant: every field named organization_id at the top level of the request or in one
//     of its message fields is set to the caller's organisation when empty and refused
//     (PERMISSION_DENIED) when it names another. Fields marked FIELD_ROLE_ACTOR are set to
//     the caller's subject, or refused when they name someone else; FIELD_ROLE_TEAM fields
//     likewise with the caller's team, for team-only holders.
//  5. The call, with the principal in its context (PrincipalFrom). Before it, "etag" is
//     removed from the request's update_mask: an etag is a precondition, never a field to
//     change, and grpc-gateway builds the mask of a REST PATCH from every field of its body.
//     A mask that named only the etag is refused rather than left empty (which servers read
//     as "every field").
//  6. Audit: a successful call of an RPC with an audit action is recorded with the caller,
//     the resource and the response's before and after. A refusal at step 3 or 4 of an
//     authenticated caller is recorded too (action "access.denied").
package adminauth

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	adminv1 "github.com/fmgate/fmgate/gen/fmgate/admin/v1"
	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	"github.com/fmgate/fmgate/internal/audit"
)

// AuthenticateFunc resolves a credential to its principal; identity's Authenticate RPC.
type AuthenticateFunc func(ctx context.Context, credential string) (*identityv1.Principal, error)

// Recorder records audit events; *audit.Recorder is one.
type Recorder interface {
	Record(ctx context.Context, e audit.Event) error
}

// Guard is the admin layer of one process.
type Guard struct {
	authn AuthenticateFunc
	audit Recorder
	log   *slog.Logger
	rules sync.Map // full method name → *rule
}

// New returns a guard authenticating through authn and recording to rec.
func New(authn AuthenticateFunc, rec Recorder, log *slog.Logger) *Guard {
	return &Guard{authn: authn, audit: rec, log: log}
}

// rule is what the contract declares about one method.
type rule struct {
	access  *adminv1.Access // nil: not an administrative RPC of fmgate's; refuse
	service string          // "registry", for audit records
	hasTeam bool            // the request has a FIELD_ROLE_TEAM field
}

// ruleOf returns the rule of fullMethod ("/fmgate.registry.v1.RegistryService/GetModel").
func (g *Guard) ruleOf(fullMethod string) *rule {
	if r, ok := g.rules.Load(fullMethod); ok {
		return r.(*rule)
	}
	r := lookupRule(fullMethod)
	g.rules.Store(fullMethod, r)
	return r
}

func lookupRule(fullMethod string) *rule {
	svc, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return &rule{}
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return &rule{}
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return &rule{}
	}
	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		return &rule{}
	}
	access, _ := proto.GetExtension(md.Options(), adminv1.E_Access).(*adminv1.Access)
	if access == nil || access.GetPermission() == "" {
		return &rule{}
	}
	pkg := strings.TrimPrefix(string(sd.ParentFile().Package()), "fmgate.")
	name, _, _ := strings.Cut(pkg, ".")
	return &rule{access: access, service: name, hasTeam: hasRole(md.Input(), adminv1.FieldRole_FIELD_ROLE_TEAM, 0)}
}

func hasRole(md protoreflect.MessageDescriptor, role adminv1.FieldRole, depth int) bool {
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if roleOf(fd) == role {
			return true
		}
		if depth == 0 && fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() && hasRole(fd.Message(), role, 1) {
			return true
		}
	}
	return false
}

func roleOf(fd protoreflect.FieldDescriptor) adminv1.FieldRole {
	r, _ := proto.GetExtension(fd.Options(), adminv1.E_FieldRole).(adminv1.FieldRole)
	return r
}

type principalKey struct{}

// PrincipalFrom returns the principal the admin layer authenticated for the call of ctx.
func PrincipalFrom(ctx context.Context) (*identityv1.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*identityv1.Principal)
	return p, ok
}

// Unary guards one call of an administrative RPC. It is a grpc.UnaryServerInterceptor.
func (g *Guard) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	r := g.ruleOf(info.FullMethod)
	if r.access == nil {
		return nil, status.Error(codes.PermissionDenied, "not an administrative API of this server: refused")
	}
	msg, ok := req.(proto.Message)
	if !ok {
		return nil, status.Error(codes.Internal, "admin layer: request is not a protobuf message")
	}
	cred, err := credential(ctx)
	if err != nil {
		return nil, err
	}
	p, err := g.authn(ctx, cred)
	if err != nil {
		if status.Code(err) == codes.Unauthenticated {
			return nil, status.Error(codes.Unauthenticated, "invalid, expired or revoked credential")
		}
		g.log.WarnContext(ctx, "admin call refused: identity unavailable", "method", info.FullMethod, "error", err)
		return nil, status.Error(codes.Unavailable, "cannot authenticate the caller now: identity service unavailable")
	}
	if err := normalizeMask(msg.ProtoReflect()); err != nil {
		return nil, err
	}
	if err := authorize(r, p, msg.ProtoReflect()); err != nil {
		g.record(ctx, p, r, info.FullMethod, "access.denied", nil, msg, map[string]any{"reason": status.Convert(err).Message()})
		return nil, err
	}
	resp, err := handler(context.WithValue(ctx, principalKey{}, p), req)
	if err != nil || r.access.GetAuditAction() == "" {
		return resp, err
	}
	out, _ := resp.(proto.Message)
	g.record(ctx, p, r, info.FullMethod, r.access.GetAuditAction(), out, msg, nil)
	return resp, nil
}

// normalizeMask removes "etag" from the request's top-level update_mask.
func normalizeMask(m protoreflect.Message) error {
	fd := m.Descriptor().Fields().ByName("update_mask")
	if fd == nil || fd.Kind() != protoreflect.MessageKind || fd.Message().FullName() != "google.protobuf.FieldMask" || !m.Has(fd) {
		return nil
	}
	mask := m.Mutable(fd).Message()
	pathsFD := mask.Descriptor().Fields().ByName("paths")
	paths := mask.Mutable(pathsFD).List()
	if paths.Len() == 0 {
		return nil
	}
	kept := make([]string, 0, paths.Len())
	for i := range paths.Len() {
		if p := paths.Get(i).String(); p != "etag" {
			kept = append(kept, p)
		}
	}
	if len(kept) == paths.Len() {
		return nil
	}
	if len(kept) == 0 {
		return status.Error(codes.InvalidArgument, "update_mask: names no field to change (etag is a precondition, not a field)")
	}
	paths.Truncate(0)
	for _, p := range kept {
		paths.Append(protoreflect.ValueOfString(p))
	}
	return nil
}

// credential returns the bearer credential of the call.
func credential(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		scheme, cred, ok := strings.Cut(v, " ")
		if ok && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(cred) != "" {
			return strings.TrimSpace(cred), nil
		}
	}
	return "", status.Error(codes.Unauthenticated, "administrative APIs need a credential: send 'authorization: Bearer <API key or OIDC token>'")
}

// authorize checks the permission and the request's organisation, actor and team fields
// (filling those left empty).
func authorize(r *rule, p *identityv1.Principal, req protoreflect.Message) error {
	// Scopes narrow a key below its holder's roles, and they name only gateway calls: a key
	// narrowed to generating with some models must not manage the organisation because its
	// holder could.
	if sc := p.GetScopes(); len(sc.GetOperations()) > 0 || len(sc.GetModels()) > 0 {
		return status.Error(codes.PermissionDenied, "this API key is scoped to gateway calls (operations or models) and cannot call administrative APIs: use an unscoped key or an OIDC token")
	}
	perm := r.access.GetPermission()
	teamOnly := false
	switch {
	case slices.Contains(p.GetPermissions(), perm):
	case slices.Contains(p.GetTeamPermissions(), perm) && (r.hasTeam || strings.HasSuffix(perm, ".read")):
		if p.GetTeamId() == "" {
			return status.Errorf(codes.PermissionDenied, "permission %q is held only through a team role, and the caller has no team", perm)
		}
		teamOnly = r.hasTeam
	default:
		return status.Errorf(codes.PermissionDenied, "the caller lacks permission %q", perm)
	}
	return scope(req, p, teamOnly, "", 0)
}

// scope checks and fills the fields the admin layer owns, at the top level of a request and
// in its message fields.
func scope(m protoreflect.Message, p *identityv1.Principal, teamOnly bool, prefix string, depth int) error {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		name := prefix + string(fd.Name())
		if fd.Kind() == protoreflect.StringKind && !fd.IsList() && !fd.IsMap() {
			var want, what string
			switch {
			case fd.Name() == "organization_id":
				want, what = p.GetOrganizationId(), "the caller's organisation"
			case roleOf(fd) == adminv1.FieldRole_FIELD_ROLE_ACTOR:
				want, what = p.GetSubject(), "the caller"
			case roleOf(fd) == adminv1.FieldRole_FIELD_ROLE_TEAM && teamOnly:
				want, what = p.GetTeamId(), "the caller's team"
			default:
				continue
			}
			switch got := m.Get(fd).String(); {
			case got == "":
				m.Set(fd, protoreflect.ValueOfString(want))
			case got != want:
				return status.Errorf(codes.PermissionDenied, "%s: %q is not %s (%q)", name, got, what, want)
			}
			continue
		}
		if depth == 0 && fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() && m.Has(fd) {
			if err := scope(m.Mutable(fd).Message(), p, teamOnly, name+".", 1); err != nil {
				return err
			}
		}
	}
	return nil
}

// record appends an audit event for a call; a failure is logged, never returned: the
// change it records has been made. The Recorder keeps events through store outages (it
// retries, then spools to disk).
func (g *Guard) record(ctx context.Context, p *identityv1.Principal, r *rule, method, action string, resp, req proto.Message, extra map[string]any) {
	if g.audit == nil {
		return
	}
	e, err := event(p, r, method, action, resp, req, extra)
	if err == nil {
		err = g.audit.Record(ctx, e)
	}
	if err != nil {
		g.log.ErrorContext(ctx, "admin change not audited", "method", method, "action", action, "error", err)
	}
}

var errNoPrincipal = errors.New("no principal")

func actorOf(p *identityv1.Principal) (audit.Actor, error) {
	if p == nil || p.GetSubject() == "" {
		return audit.Actor{}, errNoPrincipal
	}
	kind := "user"
	if p.GetKind() == identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT {
		kind = "service_account"
	}
	return audit.Actor{Subject: p.GetSubject(), Kind: kind}, nil
}
