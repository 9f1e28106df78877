package main

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/grpc"

	auditv1 "github.com/fmgate/fmgate/gen/fmgate/audit/v1"
	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/adminauth"
	"github.com/fmgate/fmgate/internal/audit"
	"github.com/fmgate/fmgate/internal/audit/auditmem"
	"github.com/fmgate/fmgate/internal/audit/auditpg"
	"github.com/fmgate/fmgate/services/edge"
)

// startAudit builds the process's audit recorders, one per service it runs (a recorder
// appends to its service's chains and spools to its own file): the edge records its
// generations, the admin layer each admin change of the service that made it. They write to
// Postgres (schema audit, migrated by `fmgate migrate`) when configured, else memory. Their
// Run loops are started and flushed by run.
func (p *process) startAudit() error {
	p.auditStore = auditmem.New()
	if p.pool != nil {
		p.auditStore = auditpg.New(p.pool, auditpg.DefaultSchema)
	}
	p.audit = auditRecorders{}
	for _, svc := range p.local {
		rec, err := audit.NewRecorder(p.auditStore, svc, audit.RecorderConfig{SpoolDir: p.cfg.auditSpoolDir, Log: p.log})
		if err != nil {
			return err
		}
		p.audit[svc] = rec
	}
	return nil
}

// auditRecorders records each event through the recorder of its service.
type auditRecorders map[string]*audit.Recorder

// Record implements adminauth.Recorder.
func (r auditRecorders) Record(ctx context.Context, e audit.Event) error {
	rec, ok := r[e.Service]
	if !ok {
		return fmt.Errorf("no audit recorder for service %q in this process", e.Service)
	}
	return rec.Record(ctx, e)
}

// startAdmin installs the admin layer on the process's gRPC server. It authenticates admin
// callers through identity: in process when this process runs identity, else at
// --identity.addr. A process that has neither refuses every administrative call.
func (p *process) startAdmin() error {
	if !p.runs("identity") && *p.cfg.peers["identity"] == "" {
		if slices.ContainsFunc(p.local, func(s string) bool { return s == "registry" || s == "policy" || s == "edge" }) {
			p.log.Warn("administrative APIs refused: this process neither runs identity nor has --identity.addr to authenticate admin callers")
		}
		return nil
	}
	conn, err := p.client(p.local[0], "identity")
	if err != nil {
		return err
	}
	id := identityv1.NewIdentityServiceClient(conn)
	authn := func(ctx context.Context, credential string) (*identityv1.Principal, error) {
		resp, err := id.Authenticate(ctx, &identityv1.AuthenticateRequest{Credential: credential})
		if err != nil {
			return nil, err
		}
		return resp.GetPrincipal(), nil
	}
	p.srv.SetAdminGuard(adminauth.New(authn, p.audit, p.log).Unary)
	return nil
}

// adminClients returns the clients through which the edge maps the administrative RPCs to
// REST: in process for the services this process runs, over the mesh for the others. The
// audit service is served where the edge runs.
func (p *process) adminClients() (edge.AdminClients, error) {
	var a edge.AdminClients
	conn := func(svc string) (grpc.ClientConnInterface, error) { return p.client("edge", svc) }
	c, err := conn("registry")
	if err != nil {
		return a, err
	}
	a.Registry = registryv1.NewRegistryServiceClient(c)
	if c, err = conn("policy"); err != nil {
		return a, err
	}
	a.Policy = policyv1.NewPolicyServiceClient(c)
	if c, err = conn("identity"); err != nil {
		return a, err
	}
	a.Identity = identityv1.NewIdentityServiceClient(c)
	a.Audit = auditv1.NewAuditServiceClient(p.srv.Channel("edge"))
	return a, nil
}
