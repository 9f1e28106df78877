package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
)

// The commands that call the admin API (apply, keys, models, policies, explain, licenses)
// share how they reach it and who they are: every service at --server unless
// --<service>.addr says otherwise, and the caller's credential (an API key or an OIDC token)
// from the FMGATE_TOKEN environment variable or from --token-file. The credential is never
// a flag's value (it would show in the process list and shell history) and never printed.

// TokenEnv holds the credential the admin commands present.
const TokenEnv = "FMGATE_TOKEN"

// adminServices are the services the admin commands call, each overridable by
// --<service>.addr.
var adminServices = []string{"registry", "identity", "policy"}

// adminFlags are the flags every admin command takes.
type adminFlags struct {
	server    string
	addrs     map[string]*string
	tokenFile string
	tls       bool
}

func (a *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.server, "server", "127.0.0.1:9090", "gRPC address (host:port) of fmgate: every service is called there unless --<service>.addr says otherwise")
	a.addrs = map[string]*string{}
	for _, svc := range adminServices {
		a.addrs[svc] = fs.String(svc+".addr", "", "gRPC address of the "+svc+" service, when not at --server")
	}
	fs.StringVar(&a.tokenFile, "token-file", "", "file holding the credential (API key or OIDC token); default: the "+TokenEnv+" environment variable")
	fs.BoolVar(&a.tls, "tls", false, "connect with TLS, verifying the server against the system's roots")
}

// adminClients are the clients of one admin command, and the context that carries the
// caller's credential to every call.
type adminClients struct {
	ctx      context.Context
	registry registryv1.RegistryServiceClient
	identity identityv1.IdentityServiceClient
	policy   policyv1.PolicyServiceClient
	close    func()
}

// dial reads the credential and connects to each service.
func (a *adminFlags) dial(ctx context.Context) (*adminClients, error) {
	token, err := a.credential()
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if a.tls {
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	// One connection per address, shared by the services there.
	conns := map[string]*grpc.ClientConn{}
	c := &adminClients{close: func() {
		for _, conn := range conns {
			conn.Close()
		}
	}}
	bySvc := map[string]*grpc.ClientConn{}
	for _, svc := range adminServices {
		addr := cmp.Or(*a.addrs[svc], a.server)
		if conns[addr] == nil {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
			if err != nil {
				c.close()
				return nil, fmt.Errorf("--%s.addr %q: %w", svc, addr, err)
			}
			conns[addr] = conn
		}
		bySvc[svc] = conns[addr]
	}
	c.registry = registryv1.NewRegistryServiceClient(bySvc["registry"])
	c.identity = identityv1.NewIdentityServiceClient(bySvc["identity"])
	c.policy = policyv1.NewPolicyServiceClient(bySvc["policy"])
	c.ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	return c, nil
}

// credential returns the caller's credential: the content of --token-file, else FMGATE_TOKEN.
func (a *adminFlags) credential() (string, error) {
	if a.tokenFile != "" {
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		if tok := strings.TrimSpace(string(b)); tok != "" {
			return tok, nil
		}
		return "", fmt.Errorf("--token-file %s is empty", a.tokenFile)
	}
	if tok, ok := lookupEnv(TokenEnv); ok && strings.TrimSpace(tok) != "" {
		return strings.TrimSpace(tok), nil
	}
	return "", errors.New("no credential: set " + TokenEnv + " to an API key or OIDC token, or give --token-file")
}

// statusText describes a failed call for a person: the gRPC code and message, the reason,
// and each invalid field on a line of its own.
func statusText(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	var b strings.Builder
	// The code as the gRPC specification spells it: INVALID_ARGUMENT.
	fmt.Fprintf(&b, "%s: %s", rpccode.Code(st.Code()).String(), st.Message())
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			fmt.Fprintf(&b, " (reason %s)", d.GetReason())
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fmt.Fprintf(&b, "\n    %s: %s", v.GetField(), v.GetDescription())
			}
		}
	}
	switch st.Code() {
	case codes.Aborted:
		b.WriteString("\n    it changed since it was read: run the command again to act on the current version")
	case codes.Unauthenticated:
		b.WriteString("\n    check the credential in " + TokenEnv + " or --token-file")
	}
	return b.String()
}

// allPages calls fetch with each page token, the first page's empty, until a page has no
// next page token, and returns every page's items.
func allPages[T any](fetch func(pageToken string) ([]T, string, error)) ([]T, error) {
	var all []T
	token := ""
	for {
		items, next, err := fetch(token)
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
		if next == "" {
			return all, nil
		}
		token = next
	}
}

// callError is a failed admin call, reported as statusText.
type callError struct{ err error }

func (e callError) Error() string { return statusText(e.err) }
func (e callError) Unwrap() error { return e.err }

// outputFormat is the -o flag of the admin commands: "table" for people, "json" for
// programs (protojson, one document per line).
type outputFormat string

func (o *outputFormat) String() string { return string(*o) }

func (o *outputFormat) Set(v string) error {
	if v != "table" && v != "json" {
		return fmt.Errorf("want table or json, not %q", v)
	}
	*o = outputFormat(v)
	return nil
}

// printJSON writes m as one line of protojson.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: false}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
