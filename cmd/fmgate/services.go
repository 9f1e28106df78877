package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	moderationv1 "github.com/fmgate/fmgate/gen/fmgate/moderation/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	quotav1 "github.com/fmgate/fmgate/gen/fmgate/quota/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/audit/auditserver"
	"github.com/fmgate/fmgate/internal/resources"
	"github.com/fmgate/fmgate/internal/seal"
	"github.com/fmgate/fmgate/services/dispatch"
	"github.com/fmgate/fmgate/services/dispatch/dispatchmem"
	"github.com/fmgate/fmgate/services/dispatch/dispatchpg"
	"github.com/fmgate/fmgate/services/edge"
	"github.com/fmgate/fmgate/services/identity"
	"github.com/fmgate/fmgate/services/identity/identitymem"
	"github.com/fmgate/fmgate/services/identity/identitypg"
	"github.com/fmgate/fmgate/services/moderation"
	"github.com/fmgate/fmgate/services/policy"
	"github.com/fmgate/fmgate/services/policy/policymem"
	"github.com/fmgate/fmgate/services/policy/policypg"
	"github.com/fmgate/fmgate/services/quota"
	"github.com/fmgate/fmgate/services/quota/quotamem"
	"github.com/fmgate/fmgate/services/quota/quotaredis"
	"github.com/fmgate/fmgate/services/registry"
	"github.com/fmgate/fmgate/services/registry/registrymem"
	"github.com/fmgate/fmgate/services/registry/registrypg"
)

// startService builds one service with its store, seeds the resources it owns, and
// registers it on the process's gRPC server.
func (p *process) startService(ctx context.Context, svc string, res *resources.File, lookup func(string) (string, bool)) error {
	log := p.log.With("service", svc)
	switch svc {
	case "registry":
		var store registry.Store = registrymem.New()
		if p.pool != nil {
			store = registrypg.New(p.pool, registrypg.DefaultSchema)
		}
		if err := seedRegistry(ctx, store, res); err != nil {
			return err
		}
		registry.NewServer(store, log).Register(p.srv)
	case "identity":
		var store identity.Store = identitymem.New()
		if p.pool != nil {
			store = identitypg.New(p.pool, identitypg.DefaultSchema)
		}
		if err := seedIdentity(ctx, store, res, lookup, log); err != nil {
			return err
		}
		identity.NewServer(store, log, identity.Config{}).Register(p.srv)
	case "policy":
		var store policy.Store = policymem.New()
		if p.pool != nil {
			store = policypg.New(p.pool, policypg.DefaultSchema)
		}
		if err := seedPolicy(ctx, store, res); err != nil {
			return err
		}
		srv := policy.NewServer(store, log)
		if p.pool != nil {
			// A policy change through another replica applies here within this interval:
			// the hot path does not wait on Postgres for every generation.
			srv.SetVersionCheckInterval(policyVersionCheck)
		}
		srv.Register(p.srv)
	case "quota":
		var limiter quota.Limiter = quotamem.New(quotamem.Config{})
		if p.redis != nil {
			l, err := quotaredis.New(p.redis, quotaredis.Config{})
			if err != nil {
				return err
			}
			limiter = l
		}
		limits, err := limitsOf(res)
		if err != nil {
			return err
		}
		srv, err := quota.NewServer(limiter, limits, log)
		if err != nil {
			return err
		}
		srv.Register(p.srv)
	case "moderation":
		srv, err := moderation.NewServer(moderation.BuiltinProfiles(), log)
		if err != nil {
			return err
		}
		srv.Register(p.srv)
	case "dispatch":
		conn, err := p.client("dispatch", "registry")
		if err != nil {
			return err
		}
		creds, err := p.credentialResolver(ctx, res, lookup, log)
		if err != nil {
			return err
		}
		d := p.cfg.dispatch
		srv := dispatch.NewServer(registryv1.NewRegistryServiceClient(conn), log, dispatch.Config{
			Timeout: d.timeout, FirstTokenTimeout: d.firstTokenTimeout, StreamIdleTimeout: d.streamIdleTimeout,
			ConnectTimeout: d.connectTimeout, MaxAttemptsPerEndpoint: d.maxAttempts, Credentials: creds,
		})
		p.closers = append(p.closers, srv.Close)
		srv.Register(p.srv)
	case "edge":
		conns := map[string]grpc.ClientConnInterface{}
		for _, dep := range needs["edge"] {
			conn, err := p.client("edge", dep)
			if err != nil {
				return err
			}
			conns[dep] = conn
		}
		cc := func(svc string) grpc.ClientConnInterface { return conns[svc] }
		auditserver.New(p.auditStore).Register(p.srv)
		p.edge = edge.NewServer(edge.Deps{
			Identity:   identityv1.NewIdentityServiceClient(cc("identity")),
			Registry:   registryv1.NewRegistryServiceClient(cc("registry")),
			Policy:     policyv1.NewPolicyServiceClient(cc("policy")),
			Quota:      quotav1.NewQuotaServiceClient(cc("quota")),
			Moderation: moderationv1.NewModerationServiceClient(cc("moderation")),
			Dispatch:   dispatchv1.NewDispatchServiceClient(cc("dispatch")),
			Log:        log,
			Audit:      p.audit[edge.AuditService],
		}, edge.Config{})
		p.edge.Register(p.srv)
	default:
		return fmt.Errorf("unknown service %q", svc)
	}
	return nil
}

// storesCredentials reports whether this process keeps vendor credentials in dispatch's
// credential store: it runs dispatch and has the master key that seals them.
func (p *process) storesCredentials() bool {
	return p.runs("dispatch") && p.cfg.credentialsMasterKey != ""
}

// checkCredentials reports, all at once, what the resources ask of the credential store that
// the configuration cannot give: without the master key a process running dispatch can
// neither seal the resources' credentials nor open the store:NAME references of endpoints.
func (p *process) checkCredentials(res *resources.File) error {
	if !p.runs("dispatch") || p.cfg.credentialsMasterKey != "" {
		return nil
	}
	const need = "needs --credentials.master-key (or FMGATE_CREDENTIALS_MASTER_KEY)"
	var errs []error
	for _, c := range res.Credentials {
		errs = append(errs, fmt.Errorf("credential %s/%s %s to be stored", c.Organization, c.Name, need))
	}
	for _, e := range res.Endpoints {
		if strings.HasPrefix(e.CredentialRef, dispatch.StorePrefix) {
			errs = append(errs, fmt.Errorf("endpoint %s/%s: credential_ref %q %s", e.Organization, e.ID, e.CredentialRef, need))
		}
	}
	return errors.Join(errs...)
}

// credentialResolver returns what dispatch resolves credential references with: with a
// master key, the credential store (Postgres when configured, else memory) seeded with the
// resources' credentials, and the environment and files; without, the environment and files
// only.
func (p *process) credentialResolver(ctx context.Context, res *resources.File, lookup func(string) (string, bool), log *slog.Logger) (dispatch.CredentialResolver, error) {
	if !p.storesCredentials() {
		return dispatch.EnvFileResolver{}, nil
	}
	key, err := seal.ParseKey(p.cfg.credentialsMasterKey)
	if err != nil {
		return nil, fmt.Errorf("--credentials.master-key: %w", err)
	}
	box, err := seal.New(key)
	if err != nil {
		return nil, fmt.Errorf("--credentials.master-key: %w", err)
	}
	var store dispatch.CredentialStore = dispatchmem.New()
	if p.pool != nil {
		store = dispatchpg.New(p.pool, dispatchpg.DefaultSchema)
	}
	if err := seedCredentials(ctx, store, box, res, lookup, log); err != nil {
		return nil, err
	}
	return dispatch.StoreResolver{Store: store, Box: box}, nil
}

// seedCredentials seals each credential of the resources into store. A value already stored
// is left as it is, so seeding at every start changes nothing.
func seedCredentials(ctx context.Context, store dispatch.CredentialStore, box *seal.Box, res *resources.File, lookup func(string) (string, bool), log *slog.Logger) error {
	now := time.Now()
	for _, c := range res.Credentials {
		value, ok := lookup(c.ValueEnv)
		if !ok || value == "" {
			return fmt.Errorf("seed credential %s/%s: %s is not set", c.Organization, c.Name, c.ValueEnv)
		}
		changed, err := dispatch.SealCredential(ctx, store, box, c.Organization, c.Name, dispatch.NewCredential(value), now)
		if err != nil {
			return fmt.Errorf("seed credential %s/%s: %w", c.Organization, c.Name, err)
		}
		log.InfoContext(ctx, "credential seeded", "organization", c.Organization, "name", c.Name, "changed", changed)
	}
	return nil
}

// policyVersionCheck bounds how long a policy change made through one replica takes to
// apply on another, when policies are in Postgres.
const policyVersionCheck = 250 * time.Millisecond

func seedRegistry(ctx context.Context, store registry.Store, res *resources.File) error {
	for _, e := range res.Endpoints {
		if err := store.PutEndpoint(ctx, endpointOf(e)); err != nil {
			return fmt.Errorf("seed endpoint %s/%s: %w", e.Organization, e.ID, err)
		}
	}
	for _, m := range res.Models {
		if err := store.PutModel(ctx, modelOf(m)); err != nil {
			return fmt.Errorf("seed model %s/%s: %w", m.Organization, m.Name, err)
		}
	}
	return nil
}

func endpointOf(e resources.Endpoint) registry.Endpoint {
	return registry.Endpoint{
		OrganizationID: e.Organization, ID: e.ID, Provider: registry.Provider(e.Provider), BaseURL: e.BaseURL,
		UpstreamModel: e.UpstreamModel, CredentialRef: e.CredentialRef, Region: e.Region,
		Weight: e.Weight, Priority: e.Priority, APIVersion: e.APIVersion, CoveredByBAA: e.CoveredByBAA,
	}
}

// modelOf is the registry's model for a file's entry, in the state the file declares.
func modelOf(m resources.Model) registry.Model {
	modalities := func(ms []string) []registry.Modality {
		var out []registry.Modality
		for _, s := range ms {
			out = append(out, registry.Modality(s))
		}
		return out
	}
	return registry.Model{
		OrganizationID: m.Organization, Name: m.Name, DisplayName: m.DisplayName, Vendor: m.Vendor,
		LifecycleState: registry.LifecycleState(m.Lifecycle), ContextWindow: m.ContextWindow,
		InputPricePerMillion: m.InputPricePerMillion, OutputPricePerMillion: m.OutputPricePerMillion,
		EndpointIDs: m.Endpoints, FallbackModels: m.FallbackModels,
		Card: registry.ModelCard{
			Family: m.Family, Version: m.Version,
			InputModalities: modalities(m.InputModalities), OutputModalities: modalities(m.OutputModalities),
			MaxOutputTokens: m.MaxOutputTokens,
			Capabilities: registry.Capabilities{Tools: m.Capabilities.Tools, Vision: m.Capabilities.Vision,
				JSONOutput: m.Capabilities.JSONOutput},
			PricePerImage: m.PricePerImage, Regions: m.Regions, IntendedUses: m.IntendedUses,
			UseCaseTags: m.UseCaseTags, Limitations: m.Limitations, EvaluationMetrics: m.EvaluationMetrics,
			License: registry.License{Name: m.License.Name, URL: m.License.URL, Version: m.License.Version,
				AcceptanceRequired: m.License.AcceptanceRequired},
			DataHandling:   registry.DataHandling{RetentionDays: m.DataHandling.RetentionDays, UsedForTraining: m.DataHandling.UsedForTraining},
			SuccessorModel: m.SuccessorModel, VendorModelID: m.VendorModelID,
		},
	}
}

// seedActor is who the licence acceptances seeded from a resources file are recorded as
// accepted by.
const seedActor = "fmgate:resources"

// seedIdentity writes the identity records of res into store: organisations, custom roles,
// teams, users and service accounts (created, or changed to what the file says), API keys
// with a secret_env or sha256, and licence acceptances. Records already as the file says are
// not written, so seeding at every start changes nothing. Keys without a secret are created
// by `fmgate apply`, which has the server generate their secret; seeding skips them.
func seedIdentity(ctx context.Context, store identity.Store, res *resources.File, lookup func(string) (string, bool), log *slog.Logger) error {
	now := time.Now().UTC()
	for _, o := range res.Organizations {
		if err := seedOrganization(ctx, store, o, now); err != nil {
			return fmt.Errorf("seed organization %s: %w", o.ID, err)
		}
	}
	for _, r := range res.Roles {
		if err := seedRole(ctx, store, r, now); err != nil {
			return fmt.Errorf("seed role %s/%s: %w", r.Organization, r.ID, err)
		}
	}
	for _, t := range res.Teams {
		if err := seedTeam(ctx, store, t, now); err != nil {
			return fmt.Errorf("seed team %s/%s: %w", t.Organization, t.ID, err)
		}
	}
	for _, u := range res.Users {
		a := identity.Account{OrganizationID: u.Organization, Kind: identity.KindUser, ID: u.ID, Email: u.Email,
			DisplayName: u.DisplayName, TeamID: u.Team, Roles: u.Roles, Attributes: u.Attributes, Disabled: u.Disabled}
		if err := seedAccount(ctx, store, a, now); err != nil {
			return fmt.Errorf("seed user %s/%s: %w", u.Organization, u.ID, err)
		}
	}
	for _, s := range res.ServiceAccounts {
		a := identity.Account{OrganizationID: s.Organization, Kind: identity.KindServiceAccount, ID: s.ID,
			DisplayName: s.DisplayName, TeamID: s.Team, Roles: s.Roles, Attributes: s.Attributes, Disabled: s.Disabled}
		if err := seedAccount(ctx, store, a, now); err != nil {
			return fmt.Errorf("seed service account %s/%s: %w", s.Organization, s.ID, err)
		}
	}
	for _, k := range res.APIKeys {
		if k.Generated() {
			log.InfoContext(ctx, "api key left to fmgate apply: it has no secret_env or sha256", "organization", k.Organization, "id", k.ID)
			continue
		}
		if err := seedAPIKey(ctx, store, k, lookup); err != nil {
			return err
		}
	}
	for _, a := range res.LicenseAcceptances {
		acc := identity.LicenseAcceptance{OrganizationID: a.Organization, TeamID: a.Team, Model: a.Model,
			LicenseName: a.LicenseName, LicenseVersion: a.LicenseVersion, AcceptedBy: seedActor, AcceptTime: now}
		err := acc.Validate()
		if err == nil {
			_, _, err = store.AcceptLicense(ctx, acc)
		}
		if err != nil {
			return fmt.Errorf("seed license acceptance %s: %w", acc.Key(), err)
		}
	}
	return nil
}

func seedOrganization(ctx context.Context, store identity.Store, o resources.Organization, now time.Time) error {
	want := identity.Organization{ID: o.ID, DisplayName: o.DisplayName, CreateTime: now, UpdateTime: now}
	if err := want.Validate(); err != nil {
		return err
	}
	if _, err := store.GetOrganization(ctx, o.ID); errors.Is(err, identity.ErrNotFound) {
		return store.CreateOrganization(ctx, want)
	} else if err != nil {
		return err
	}
	_, _, err := store.UpdateOrganization(ctx, o.ID, func(cur identity.Organization) (identity.Organization, error) {
		next := cur
		next.DisplayName = want.DisplayName
		return changed(cur, next, now), nil
	})
	return err
}

func seedRole(ctx context.Context, store identity.Store, r resources.Role, now time.Time) error {
	perms := make([]identity.Permission, len(r.Permissions))
	for i, p := range r.Permissions {
		perms[i] = identity.Permission(p)
	}
	want := identity.Role{OrganizationID: r.Organization, ID: r.ID, DisplayName: r.DisplayName, Permissions: perms,
		Scope: identity.RoleScope(r.Scope), CreateTime: now, UpdateTime: now}
	if err := want.Validate(); err != nil {
		return err
	}
	if _, err := store.GetRole(ctx, r.Organization, r.ID); errors.Is(err, identity.ErrNotFound) {
		return store.CreateRole(ctx, want)
	} else if err != nil {
		return err
	}
	_, _, err := store.UpdateRole(ctx, r.Organization, r.ID, func(cur identity.Role) (identity.Role, error) {
		next := cur
		next.DisplayName, next.Permissions, next.Scope = want.DisplayName, want.Permissions, want.Scope
		return changed(cur, next, now), nil
	})
	return err
}

func seedTeam(ctx context.Context, store identity.Store, t resources.Team, now time.Time) error {
	want := identity.Team{OrganizationID: t.Organization, ID: t.ID, DisplayName: t.DisplayName, Attributes: t.Attributes,
		CreateTime: now, UpdateTime: now}
	if err := want.Validate(); err != nil {
		return err
	}
	if _, err := store.GetTeam(ctx, t.Organization, t.ID); errors.Is(err, identity.ErrNotFound) {
		return store.CreateTeam(ctx, want)
	} else if err != nil {
		return err
	}
	_, _, err := store.UpdateTeam(ctx, t.Organization, t.ID, func(cur identity.Team) (identity.Team, error) {
		next := cur
		next.DisplayName, next.Attributes = want.DisplayName, want.Attributes
		return changed(cur, next, now), nil
	})
	return err
}

func seedAccount(ctx context.Context, store identity.Store, a identity.Account, now time.Time) error {
	a.CreateTime, a.UpdateTime = now, now
	if err := a.Validate(); err != nil {
		return err
	}
	if _, err := store.GetAccount(ctx, a.OrganizationID, a.Kind, a.ID); errors.Is(err, identity.ErrNotFound) {
		return store.CreateAccount(ctx, a)
	} else if err != nil {
		return err
	}
	_, _, err := store.UpdateAccount(ctx, a.OrganizationID, a.Kind, a.ID, func(cur identity.Account) (identity.Account, error) {
		next := cur
		next.Email, next.DisplayName, next.TeamID = a.Email, a.DisplayName, a.TeamID
		next.Roles, next.Attributes, next.Disabled = a.Roles, a.Attributes, a.Disabled
		return changed(cur, next, now), nil
	})
	return err
}

// changed returns next with its update time set to now when its content differs from cur's,
// else cur: a record already as the file says keeps its update time and etag.
func changed[T interface{ Etag() string }](cur, next T, now time.Time) T {
	if cur.Etag() == next.Etag() {
		return cur
	}
	switch r := any(&next).(type) {
	case *identity.Organization:
		r.UpdateTime = now
	case *identity.Team:
		r.UpdateTime = now
	case *identity.Account:
		r.UpdateTime = now
	case *identity.Role:
		r.UpdateTime = now
	}
	return next
}

func seedAPIKey(ctx context.Context, store identity.Store, k resources.APIKey, lookup func(string) (string, bool)) error {
	key := identity.APIKey{
		ID: k.ID, OrganizationID: k.Organization, DisplayName: k.DisplayName, Subject: k.Subject,
		Kind: identity.Kind(k.Kind), TeamID: k.Team, Roles: k.Roles, Attributes: k.Attributes,
		Scopes: scopesOf(k.Scopes), ExpireTime: k.ExpireTime, CreateTime: time.Unix(0, 0).UTC(),
	}
	if k.SecretEnv != "" {
		secret, ok := lookup(k.SecretEnv)
		if !ok {
			return fmt.Errorf("seed api key %s/%s: %s is not set", k.Organization, k.ID, k.SecretEnv)
		}
		if err := identity.ValidateSecret(secret); err != nil {
			return fmt.Errorf("seed api key %s/%s: %s: %w", k.Organization, k.ID, k.SecretEnv, err)
		}
		key.Hash = identity.HashKey(secret)
		key.Prefix = identity.Prefix(secret)
	} else {
		b, _ := hex.DecodeString(k.SHA256) // checked by resources.Validate
		copy(key.Hash[:], b)
		key.Prefix = "sha256:" + k.SHA256[:5]
	}
	if err := store.PutAPIKey(ctx, key); err != nil {
		return fmt.Errorf("seed api key %s/%s: %w", k.Organization, k.ID, err)
	}
	return nil
}

func scopesOf(s resources.Scopes) identity.Scopes {
	out := identity.Scopes{Models: s.Models}
	for _, op := range s.Operations {
		out.Operations = append(out.Operations, identity.Operation(op))
	}
	return out
}

func seedPolicy(ctx context.Context, store policy.Store, res *resources.File) error {
	for _, p := range res.Policies {
		if _, err := store.PutPolicy(ctx, policyOf(p)); err != nil {
			return fmt.Errorf("seed policy %s/%s: %w", p.Organization, p.ID, err)
		}
	}
	return nil
}

func policyOf(p resources.Policy) policy.Policy {
	pol := policy.Policy{
		ID: p.ID, OrganizationID: p.Organization, Description: p.Description, Effect: policy.Effect(p.Effect),
		Subjects: p.Subjects, Models: p.Models, Condition: p.Condition,
		ModerationProfile: p.ModerationProfile, MaxOutputTokens: p.MaxOutputTokens,
		AllowedEndpointRegions: p.AllowedEndpointRegions, AllowedModalities: p.AllowedModalities,
		LogGroup: p.LogGroup, MaskPersonalData: p.MaskPersonalData, RequireBAACoverage: p.RequireBAACoverage,
	}
	if p.LogRetention != nil {
		pol.LogRetention = policy.RetainFor(*p.LogRetention)
	}
	return pol
}

var (
	partitions = map[string]quota.Partition{
		"organization": quota.ByOrganization, "team": quota.ByTeam, "subject": quota.BySubject, "api_key": quota.ByAPIKey,
	}
	kinds = map[string]quota.Kind{"requests": quota.KindRequests, "tokens": quota.KindTokens}
)

func limitsOf(res *resources.File) ([]quota.Limit, error) {
	var out []quota.Limit
	for _, l := range res.Limits {
		by, ok := partitions[l.Scope]
		if !ok {
			return nil, fmt.Errorf("limit %q: scope must be organization, team, subject or api_key", l.Name)
		}
		kind, ok := kinds[l.Kind]
		if !ok {
			return nil, fmt.Errorf("limit %q: kind must be requests or tokens", l.Name)
		}
		out = append(out, quota.Limit{
			Name:  l.Name,
			Match: quota.Match{OrganizationID: l.Organization, TeamID: l.Team, Subject: l.Subject, APIKeyID: l.APIKey, Model: l.Model},
			Scope: quota.Scope{By: by, PerModel: l.PerModel}, Kind: kind, Amount: l.Amount, Window: l.Window,
		})
	}
	return out, nil
}

// demoKey returns the demo API key: FMGATE_DEMO_API_KEY when set, else a new one.
func demoKey() (key string, generated bool, err error) {
	if k, ok := os.LookupEnv(DemoKeyEnv); ok && k != "" {
		if err := identity.ValidateSecret(k); err != nil {
			return "", false, fmt.Errorf("%s: %w", DemoKeyEnv, err)
		}
		return k, false, nil
	}
	k, err := identity.NewKey()
	return k, true, err
}

func lookupEnv(name string) (string, bool) { return os.LookupEnv(name) }
