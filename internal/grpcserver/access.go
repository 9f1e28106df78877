package grpcserver

import (
	"context"
	"crypto/subtle"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// MeshTokenHeader is the metadata key that carries the mesh token between fmgate processes.
const MeshTokenHeader = "x-fmgate-mesh-token"

// Which callers may call what. Deny by default:
//
//   - Public services (the gateway, health, reflection) answer anyone; the gateway
//     authenticates its callers itself.
//   - The internal RPCs that services call on each other (servicePaths) answer in-process
//     callers always, and network callers only when they present the mesh token the process
//     was configured with. With no token configured (the all-in-one default) no network
//     caller reaches them: a client of the gateway's port cannot call dispatch or identity
//     directly and so bypass authentication, policy, quota or moderation.
//   - Every other RPC is an administrative one: the admin guard (SetAdminGuard; package
//     internal/adminauth) authenticates the caller's own credential, authorises it by role
//     and tenant, and audits the change, whether the call came over the network, through
//     the edge's REST mapping or in process. Without a guard they refuse every caller.
//     Administrative streams are refused: no administrative RPC streams.
var (
	publicPrefixes = []string{"/fmgate.gateway.v1.GatewayService/", "/grpc.health.v1.Health/", "/grpc.reflection."}
	servicePaths   = map[string]bool{
		"/fmgate.identity.v1.IdentityService/Authenticate":     true,
		"/fmgate.identity.v1.IdentityService/WatchRevocations": true,
		"/fmgate.registry.v1.RegistryService/ResolveRoute":     true,
		"/fmgate.registry.v1.RegistryService/ListModels":       true,
		"/fmgate.registry.v1.RegistryService/GetEndpoint":      true,
		"/fmgate.policy.v1.PolicyService/Evaluate":             true,
		"/fmgate.quota.v1.QuotaService/Reserve":                true,
		"/fmgate.quota.v1.QuotaService/Commit":                 true,
		"/fmgate.moderation.v1.ModerationService/ScreenInput":  true,
		"/fmgate.moderation.v1.ModerationService/ScreenOutput": true,
		"/fmgate.moderation.v1.ModerationService/ScreenStream": true,
		"/fmgate.dispatch.v1.DispatchService/Generate":         true,
		"/fmgate.dispatch.v1.DispatchService/StreamGenerate":   true,
		"/fmgate.dispatch.v1.DispatchService/Embed":            true,
	}
)

// SetAdminGuard installs the interceptor that guards administrative RPCs. Call it before the
// server takes calls.
func (s *Server) SetAdminGuard(g grpc.UnaryServerInterceptor) { s.admin = g }

// kind says which of the three kinds of RPC method is.
type kind int

const (
	kindPublic kind = iota
	kindInternal
	kindAdmin
)

func kindOf(method string) kind {
	for _, p := range publicPrefixes {
		if strings.HasPrefix(method, p) {
			return kindPublic
		}
	}
	if servicePaths[method] {
		return kindInternal
	}
	return kindAdmin
}

// errNoAdmin refuses administrative calls on a server without an admin guard.
var errNoAdmin = status.Error(codes.PermissionDenied, "administrative APIs are not enabled on this server")

// authorizeInternal decides whether the caller of an internal RPC may go on.
func (s *Server) authorizeInternal(ctx context.Context) error {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil && p.Addr.Network() == "inproc" {
		return nil
	}
	if s.meshToken == "" {
		return status.Error(codes.PermissionDenied, "internal service: not reachable over the network without a mesh token (--mesh.token)")
	}
	md, _ := metadata.FromIncomingContext(ctx)
	got := md.Get(MeshTokenHeader)
	if len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), []byte(s.meshToken)) != 1 {
		return status.Error(codes.Unauthenticated, "internal service: missing or wrong mesh token")
	}
	return nil
}

func (s *Server) guardUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	switch kindOf(info.FullMethod) {
	case kindPublic:
	case kindInternal:
		if err := s.authorizeInternal(ctx); err != nil {
			return nil, err
		}
	default:
		if s.admin == nil {
			return nil, errNoAdmin
		}
		return s.admin(ctx, req, info, handler)
	}
	return handler(ctx, req)
}

func (s *Server) guardStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	switch kindOf(info.FullMethod) {
	case kindPublic:
	case kindInternal:
		if err := s.authorizeInternal(ss.Context()); err != nil {
			return err
		}
	default:
		return errNoAdmin
	}
	return handler(srv, ss)
}

// meshToken attaches the mesh token to every call of a client connection to a peer.
func meshTokenInterceptors(token string) []grpc.DialOption {
	if token == "" {
		return nil
	}
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, MeshTokenHeader, token), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(metadata.AppendToOutgoingContext(ctx, MeshTokenHeader, token), desc, cc, method, opts...)
		}),
	}
}
