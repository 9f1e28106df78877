package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/config"
	"github.com/fmgate/fmgate/internal/resources"
	"github.com/fmgate/fmgate/services/registry"
)

const applyUsage = `Usage:
  fmgate apply -f FILE [--dry-run] [--server host:port] [--token-file FILE]

Reconciles a running fmgate with a resources file through the admin API, in dependency
order: organizations, roles, teams, users, service accounts, endpoints, models, policies,
license acceptances, API keys. What is missing is created; what exists and differs in a
field the file declares is updated in exactly those fields (with the etag read, so a
concurrent change is refused, not overwritten); what is equal is left alone, so a second
apply of the same file changes nothing. A model is moved to the declared lifecycle state
along the lifecycle's transitions, each recorded with the entry's evidence_note (or
"applied from FILE"). Apply never deletes.

One line per resource: "+" created, "~" updated (the fields), "=" unchanged, "-" skipped,
"!" failed. --dry-run reads only, and prints each change as old → new.

API keys: a key with secret_env or sha256 is skipped (its secret is chosen outside fmgate;
only "fmgate serve --resources" installs it). A key without them is created when it does
not exist, for the stored user or service account its kind and subject name; the server
generates the secret, which apply prints once: store it then, it is never shown again.
Keys cannot change: a stored key that differs from the file is reported as an error.

The credential (an API key or OIDC token of a principal holding the permissions the changes
need) comes from FMGATE_TOKEN or --token-file.

Flags:
`

// errApplyFailed ends apply with a non-zero status once every failure is printed.
var errApplyFailed = errors.New("apply: some resources failed")

func applyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fmgate apply", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, applyUsage); fs.PrintDefaults() }
	file := fs.String("f", "", "resources file to apply (required)")
	dryRun := fs.Bool("dry-run", false, "print what would change, old → new, and change nothing")
	var af adminFlags
	af.register(fs)
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	if *file == "" {
		fs.Usage()
		return errors.New("apply: -f FILE is required")
	}
	res, err := resources.Load(*file)
	if err != nil {
		return err
	}
	c, err := af.dial(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	a := &applier{c: c, out: stdout, dryRun: *dryRun, source: filepath.Base(*file)}
	a.apply(res)
	return a.finish()
}

// applier reconciles one file.
type applier struct {
	c      *adminClients
	out    io.Writer
	dryRun bool
	source string

	created, updated, unchanged, skipped, failed int
	// endpoints caches each organisation's endpoints by id: the admin API lists them.
	endpoints map[string]map[string]*registryv1.Endpoint
	// licenses caches the acceptances of each organisation and team.
	licenses map[[2]string][]*identityv1.LicenseAcceptance
}

// change is one field that differs: its proto path and both values, printed.
type change struct{ path, old, new string }

// item is one resource of the file and how to read, create and update it.
type item struct {
	kind, id string
	// want holds the file's values; paths are the proto paths of the fields it declares.
	want  proto.Message
	paths []string
	// get returns the stored resource, or nil when there is none.
	get    func(ctx context.Context) (proto.Message, error)
	create func(ctx context.Context) (proto.Message, error)
	// update changes the fields of mask, refused when the resource's etag is not etag.
	update func(ctx context.Context, etag string, mask []string) (proto.Message, error)
	// extra are further changes (a model's lifecycle): planned from the stored resource
	// (nil when it is to be created), and carried out after the create or update.
	extra *extraChange
}

type extraChange struct {
	plan func(cur proto.Message) (change, bool, error)
	do   func(ctx context.Context, cur proto.Message) error
}

func (a *applier) apply(res *resources.File) {
	a.endpoints = map[string]map[string]*registryv1.Endpoint{}
	a.licenses = map[[2]string][]*identityv1.LicenseAcceptance{}
	if a.dryRun {
		fmt.Fprintf(a.out, "dry run: nothing is changed\n")
	}
	for i, o := range res.Organizations {
		a.run(a.organization(o, res.Declared("organizations", i)))
	}
	for i, r := range res.Roles {
		a.run(a.role(r, res.Declared("roles", i)))
	}
	for i, t := range res.Teams {
		a.run(a.team(t, res.Declared("teams", i)))
	}
	for i, u := range res.Users {
		a.run(a.user(u, res.Declared("users", i)))
	}
	for i, s := range res.ServiceAccounts {
		a.run(a.serviceAccount(s, res.Declared("service_accounts", i)))
	}
	for i, e := range res.Endpoints {
		a.run(a.endpoint(e, res.Declared("endpoints", i)))
	}
	for i, m := range res.Models {
		a.run(a.model(m, res.Declared("models", i)))
	}
	for i, p := range res.Policies {
		a.run(a.policy(p, res.Declared("policies", i)))
	}
	for _, l := range res.LicenseAcceptances {
		a.license(l)
	}
	for _, k := range res.APIKeys {
		a.apiKey(k)
	}
}

func (a *applier) finish() error {
	verb := ""
	if a.dryRun {
		verb = "dry run, would be "
	}
	fmt.Fprintf(a.out, "apply: %s%d created, %d updated, %d unchanged, %d skipped, %d failed\n",
		verb, a.created, a.updated, a.unchanged, a.skipped, a.failed)
	if a.failed > 0 {
		return errApplyFailed
	}
	return nil
}

func (a *applier) fail(kind, id string, err error) {
	a.failed++
	fmt.Fprintf(a.out, "! %s %s: %s\n", kind, id, statusText(err))
}

// run reconciles one item.
func (a *applier) run(it item) {
	ctx := a.c.ctx
	cur, err := it.get(ctx)
	if err != nil {
		a.fail(it.kind, it.id, err)
		return
	}
	var extra *change
	if it.extra != nil {
		c, ok, err := it.extra.plan(cur)
		if err != nil {
			a.fail(it.kind, it.id, err)
			return
		}
		if ok {
			extra = &c
		}
	}
	if cur == nil {
		if a.dryRun {
			a.created++
			fmt.Fprintf(a.out, "+ %s %s would be created\n", it.kind, it.id)
			for _, p := range it.paths {
				fmt.Fprintf(a.out, "    %s: %s\n", p, formatAt(it.want, p))
			}
			if extra != nil {
				fmt.Fprintf(a.out, "    %s: %s → %s\n", extra.path, extra.old, extra.new)
			}
			return
		}
		cur, err = it.create(ctx)
		if err == nil && extra != nil {
			err = it.extra.do(ctx, cur)
		}
		if err != nil {
			a.fail(it.kind, it.id, err)
			return
		}
		a.created++
		line := fmt.Sprintf("+ %s %s created", it.kind, it.id)
		if extra != nil {
			line += fmt.Sprintf(" (%s %s → %s)", extra.path, extra.old, extra.new)
		}
		fmt.Fprintln(a.out, line)
		return
	}
	changes := diff(it.want, cur, it.paths)
	var names []string
	for _, c := range changes {
		names = append(names, c.path)
	}
	// The update's mask is the fields that differ; the extra change is made apart, after it.
	mask := names
	if extra != nil {
		names = append(names, extra.path)
		changes = append(changes, *extra)
	}
	if len(names) == 0 {
		a.unchanged++
		fmt.Fprintf(a.out, "= %s %s unchanged\n", it.kind, it.id)
		return
	}
	if a.dryRun {
		a.updated++
		fmt.Fprintf(a.out, "~ %s %s would be updated: %s\n", it.kind, it.id, strings.Join(names, ", "))
		for _, c := range changes {
			fmt.Fprintf(a.out, "    %s: %s → %s\n", c.path, c.old, c.new)
		}
		return
	}
	if len(mask) > 0 {
		cur, err = it.update(ctx, etagOf(cur), mask)
	}
	if err == nil && extra != nil {
		err = it.extra.do(ctx, cur)
	}
	if err != nil {
		a.fail(it.kind, it.id, err)
		return
	}
	a.updated++
	fmt.Fprintf(a.out, "~ %s %s updated %s\n", it.kind, it.id, strings.Join(names, ", "))
}

// etagOf returns the etag field of a stored resource.
func etagOf(m proto.Message) string {
	r := m.ProtoReflect()
	if fd := r.Descriptor().Fields().ByName("etag"); fd != nil {
		return r.Get(fd).String()
	}
	return ""
}

// notFound turns NOT_FOUND into "no resource".
func notFound[T proto.Message](m T, err error) (proto.Message, error) {
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// keyPath maps a key of a file's entry to the proto path of the resource field it sets.
type keyPath struct{ key, path string }

// blocks are keys whose value is a block of keys; an entry that spells out some of them
// declares those fields only.
var blocks = map[string][]string{
	"capabilities":  {"tools", "vision", "json_output"},
	"license":       {"name", "url", "version", "acceptance_required"},
	"data_handling": {"retention_days", "used_for_training"},
}

// declaredPaths returns the proto paths of the keys the entry declares, in table order.
func declaredPaths(fields resources.Fields, table []keyPath) []string {
	var out []string
	for _, kp := range table {
		subs, isBlock := blocks[kp.key]
		if isBlock && fields != nil {
			var some []string
			for _, s := range subs {
				if fields[kp.key+"."+s] {
					some = append(some, kp.path+"."+s)
				}
			}
			if len(some) > 0 {
				out = append(out, some...)
				continue
			}
		}
		if fields.Has(kp.key) {
			out = append(out, kp.path)
		}
	}
	return out
}

func same(keys ...string) []keyPath {
	out := make([]keyPath, len(keys))
	for i, k := range keys {
		out[i] = keyPath{k, k}
	}
	return out
}

func id2(org, id string) string { return org + "/" + id }

func (a *applier) organization(o resources.Organization, f resources.Fields) item {
	want := &identityv1.Organization{OrganizationId: o.ID, DisplayName: o.DisplayName}
	id := a.c.identity
	return item{kind: "organization", id: o.ID, want: want, paths: declaredPaths(f, same("display_name")),
		get: func(ctx context.Context) (proto.Message, error) {
			r, err := id.GetOrganization(ctx, &identityv1.GetOrganizationRequest{OrganizationId: o.ID})
			return notFound(r.GetOrganization(), err)
		},
		create: func(ctx context.Context) (proto.Message, error) {
			r, err := id.CreateOrganization(ctx, &identityv1.CreateOrganizationRequest{Organization: want})
			return r.GetAfter(), err
		},
		update: func(ctx context.Context, etag string, mask []string) (proto.Message, error) {
			w := proto.CloneOf(want)
			w.Etag = etag
			r, err := id.UpdateOrganization(ctx, &identityv1.UpdateOrganizationRequest{Organization: w, UpdateMask: fieldMask(mask...)})
			return r.GetAfter(), err
		},
	}
}

func (a *applier) role(r resources.Role, f resources.Fields) item {
	want := &identityv1.Role{OrganizationId: r.Organization, Id: r.ID, DisplayName: r.DisplayName,
		Permissions: r.Permissions, Scope: enumOf[identityv1.RoleScope]("ROLE_SCOPE_", r.Scope, identityv1.RoleScope_value)}
	id := a.c.identity
	return item{kind: "role", id: id2(r.Organization, r.ID), want: want,
		paths: declaredPaths(f, same("display_name", "scope", "permissions")),
		get: func(ctx context.Context) (proto.Message, error) {
			resp, err := id.GetRole(ctx, &identityv1.GetRoleRequest{OrganizationId: r.Organization, Id: r.ID})
			return notFound(resp.GetRole(), err)
		},
		create: func(ctx context.Context) (proto.Message, error) {
			resp, err := id.CreateRole(ctx, &identityv1.CreateRoleRequest{Role: want})
			return resp.GetAfter(), err
		},
		update: func(ctx context.Context, etag string, mask []string) (proto.Message, error) {
			w := proto.CloneOf(want)
			w.Etag = etag
			resp, err := id.UpdateRole(ctx, &identityv1.UpdateRoleRequest{Role: w, UpdateMask: fieldMask(mask...)})
			return resp.GetAfter(), err
		},
	}
}

func (a *applier) team(t resources.Team, f resources.Fields) item {
	want := &identityv1.Team{OrganizationId: t.Organization, Id: t.ID, DisplayName: t.DisplayName, Attributes: t.Attributes}
	id := a.c.identity
	return item{kind: "team", id: id2(t.Organization, t.ID), want: want, paths: declaredPaths(f, same("display_name", "attributes")),
		get: func(ctx context.Context) (proto.Message, error) {
			resp, err := id.GetTeam(ctx, &identityv1.GetTeamRequest{OrganizationId: t.Organization, Id: t.ID})
			return notFound(resp.GetTeam(), err)
		},
		create: func(ctx context.Context) (proto.Message, error) {
			resp, err := id.CreateTeam(ctx, &identityv1.CreateTeamRequest{Team: want})
			return resp.GetAfter(), err
		},
		update: func(ctx context.Context, etag string, mask []string) (proto.Message, error) {
			w := proto.CloneOf(want)
			w.Etag = etag
			resp, err := id.UpdateTeam(ctx, &identityv1.UpdateTeamRequest{Team: w, UpdateMask: fieldMask(mask...)})
			return resp.GetAfter(), err
		},
	}
}

var accountKeys = []keyPath{{"email", "email"}, {"display_name", "display_name"}, {"team", "team_id"},
	{"roles", "roles"}, {"attributes", "attributes"}, {"disabled", "disabled"}}

func (a *applier) user(u resources.User, f resources.Fields) item {
	want := &identityv1.User{OrganizationId: u.Organization, Id: u.ID, Email: u.Email, DisplayName: u.DisplayName,
		TeamId: u.Team, Roles: u.Roles, Attributes: u.Attributes, Disabled: u.Disabled}
	id := a.c.identity
	return item{kind: "user", id: id2(u.Organization, u.ID), want: want, paths: declaredPaths(f, accountKeys),
		get: func(ctx context.Context) (proto.Message, error) {
			resp, err := id.GetUser(ctx, &identityv1.GetUserRequest{OrganizationId: u.Organization, Id: u.ID})
			return notFound(resp.GetUser(), err)
		},
		create: func(ctx context.Context) (proto.Message, error) {
			resp, err := id.CreateUser(ctx, &identityv1.CreateUserRequest{User: want})
			return resp.GetAfter(), err
		},
		update: func(ctx context.Context, etag string, mask []string) (proto.Message, error) {
			w := proto.CloneOf(want)
			w.Etag = etag
			resp, err := id.UpdateUser(ctx, &identityv1.UpdateUserRequest{User: w, UpdateMask: fieldMask(mask...)})
			return resp.GetAfter(), err
		},
	}
}

func (a *applier) serviceAccount(s resources.ServiceAccount, f resources.Fields) item {
	want := &identityv1.ServiceAccount{OrganizationId: s.Organization, Id: s.ID, DisplayName: s.DisplayName,
		TeamId: s.Team, Roles: s.Roles, Attributes: s.Attributes, Disabled: s.Disabled}
	id := a.c.identity
	return item{kind: "service account", id: id2(s.Organization, s.ID), want: want, paths: declaredPaths(f, accountKeys[1:]),
		get: func(ctx context.Context) (proto.Message, error) {
			resp, err := id.GetServiceAccount(ctx, &identityv1.GetServiceAccountRequest{OrganizationId: s.Organization, Id: s.ID})
			return notFound(resp.GetServiceAccount(), err)
		},
		create: func(ctx context.Context) (proto.Message, error) {
			resp, err := id.CreateServiceAccount(ctx, &identityv1.CreateServiceAccountRequest{ServiceAccount: want})
			return resp.GetAfter(), err
		},
		update: func(ctx context.Context, etag string, mask []string) (proto.Message, error) {
			w := proto.CloneOf(want)
			w.Etag = etag
			resp, err := id.UpdateServiceAccount(ctx, &identityv1.UpdateServiceAccountRequest{ServiceAccount: w, UpdateMask: fieldMask(mask...)})
			return resp.GetAfter(), err
		},
	}
}

func (a *applier) endpoint(e resources.Endpoint, f resources.Fields) item {
	want := &registryv1.Endpoint{OrganizationId: e.Organization, Id: e.ID,
		Provider: enumOf[registryv1.ProviderKind]("PROVIDER_KIND_", e.Provider, registryv1.ProviderKind_value),
		BaseUrl:  e.BaseURL, UpstreamModel: e.UpstreamModel, CredentialRef: e.CredentialRef, Region: e.Region,
		Weight: e.Weight, Priority: e.Priority, ApiVersion: e.APIVersion, CoveredByBaa: e.CoveredByBAA}
	reg := a.c.registry
	return item{kind: "endpoint", id: id2(e.Organization, e.ID), want: want,
		paths: declaredPaths(f, same("provider", "base_url", "upstream_model", "credential_ref", "region", "weight",
			"priority", "api_version", "covered_by_baa")),
		get: func(ctx context.Context) (proto.Message, error) {
			eps, err := a.listEndpoints(ctx, e.Organization)
			if err != nil {
				return nil, err
			}
			if ep, ok := eps[e.ID]; ok {
				return ep, nil
			}
			return nil, nil
		},
		create: func(ctx context.Context) (proto.Message, error) {
			resp, err := reg.CreateEndpoint(ctx, &registryv1.CreateEndpointRequest{Endpoint: want})
			return resp.GetAfter(), err
		},
		update: func(ctx context.Context, etag string, mask []string) (proto.Message, error) {
			w := proto.CloneOf(want)
			w.Etag = etag
			resp, err := reg.UpdateEndpoint(ctx, &registryv1.UpdateEndpointRequest{Endpoint: w, UpdateMask: fieldMask(mask...)})
			return resp.GetAfter(), err
		},
	}
}

// listEndpoints reads an organisation's endpoints once: the admin API has no single-endpoint
// read.
func (a *applier) listEndpoints(ctx context.Context, org string) (map[string]*registryv1.Endpoint, error) {
	if eps, ok := a.endpoints[org]; ok {
		return eps, nil
	}
	list, err := allPages(func(token string) ([]*registryv1.Endpoint, string, error) {
		resp, err := a.c.registry.ListEndpoints(ctx, &registryv1.ListEndpointsRequest{OrganizationId: org, PageSize: 1000, PageToken: token})
		return resp.GetEndpoints(), resp.GetNextPageToken(), err
	})
	if err != nil {
		return nil, err
	}
	eps := map[string]*registryv1.Endpoint{}
	for _, e := range list {
		eps[e.GetId()] = e
	}
	a.endpoints[org] = eps
	return eps, nil
}

var modelKeys = []keyPath{
	{"display_name", "display_name"}, {"vendor", "vendor"}, {"context_window", "context_window"},
	{"input_price_per_million", "input_price_per_million"}, {"output_price_per_million", "output_price_per_million"},
	{"endpoints", "endpoint_ids"}, {"fallback_models", "fallback_models"}, {"family", "family"}, {"version", "version"},
	{"input_modalities", "input_modalities"}, {"output_modalities", "output_modalities"},
	{"max_output_tokens", "max_output_tokens"}, {"capabilities", "capabilities"}, {"price_per_image", "price_per_image"},
	{"regions", "regions"}, {"intended_uses", "intended_uses"}, {"use_case_tags", "use_case_tags"},
	{"limitations", "limitations"}, {"evaluation_metrics", "evaluation_metrics"}, {"license", "license"},
	{"data_handling", "data_handling"}, {"successor_model", "successor_model"}, {"vendor_model_id", "vendor_model_id"},
}

func (a *applier) model(m resources.Model, f resources.Fields) item {
	modalities := func(ms []string) []registryv1.Modality {
		var out []registryv1.Modality
		for _, s := range ms {
			out = append(out, enumOf[registryv1.Modality]("MODALITY_", s, registryv1.Modality_value))
		}
		return out
	}
	want := &registryv1.Model{OrganizationId: m.Organization, Name: m.Name, DisplayName: m.DisplayName, Vendor: m.Vendor,
		ContextWindow: m.ContextWindow, InputPricePerMillion: m.InputPricePerMillion, OutputPricePerMillion: m.OutputPricePerMillion,
		EndpointIds: m.Endpoints, FallbackModels: m.FallbackModels, Family: m.Family, Version: m.Version,
		InputModalities: modalities(m.InputModalities), OutputModalities: modalities(m.OutputModalities),
		MaxOutputTokens: m.MaxOutputTokens,
		Capabilities:    &registryv1.Capabilities{Tools: m.Capabilities.Tools, Vision: m.Capabilities.Vision, JsonOutput: m.Capabilities.JSONOutput},
		PricePerImage:   m.PricePerImage, Regions: m.Regions, IntendedUses: m.IntendedUses, UseCaseTags: m.UseCaseTags,
		Limitations: m.Limitations, EvaluationMetrics: m.EvaluationMetrics,
		License: &registryv1.License{Name: m.License.Name, Url: m.License.URL, Version: m.License.Version,
			AcceptanceRequired: m.License.AcceptanceRequired},
		DataHandling:   &registryv1.DataHandling{RetentionDays: m.DataHandling.RetentionDays, UsedForTraining: m.DataHandling.UsedForTraining},
		SuccessorModel: m.SuccessorModel, VendorModelId: m.VendorModelID,
	}
	reg := a.c.registry
	note := m.EvidenceNote
	if note == "" {
		note = "applied from " + a.source
	}
	it := item{kind: "model", id: id2(m.Organization, m.Name), want: want, paths: declaredPaths(f, modelKeys),
		get: func(ctx context.Context) (proto.Message, error) {
			resp, err := reg.GetModel(ctx, &registryv1.GetModelRequest{OrganizationId: m.Organization, Name: m.Name})
			return notFound(resp.GetModel(), err)
		},
		create: func(ctx context.Context) (proto.Message, error) {
			resp, err := reg.CreateModel(ctx, &registryv1.CreateModelRequest{Model: want})
			return resp.GetAfter(), err
		},
		update: func(ctx context.Context, etag string, mask []string) (proto.Message, error) {
			w := proto.CloneOf(want)
			w.Etag = etag
			resp, err := reg.UpdateModel(ctx, &registryv1.UpdateModelRequest{Model: w, UpdateMask: fieldMask(mask...)})
			return resp.GetAfter(), err
		},
	}
	if m.Lifecycle == "" || !f.Has("lifecycle") {
		return it
	}
	target := registry.LifecycleState(m.Lifecycle)
	it.extra = &extraChange{
		plan: func(cur proto.Message) (change, bool, error) {
			from := registry.LifecycleProposed // CreateModel proposes
			if cur != nil {
				from = registry.LifecycleStateFromProto(cur.(*registryv1.Model).GetLifecycleState())
			}
			if from == target {
				return change{}, false, nil
			}
			path := lifecyclePath(from, target)
			if path == nil {
				return change{}, false, fmt.Errorf("lifecycle: a model cannot go from %s to %s", from, target)
			}
			steps := make([]string, len(path))
			for i, s := range path {
				steps[i] = string(s)
			}
			return change{path: "lifecycle_state", old: string(from), new: strings.Join(steps, " → ")}, true, nil
		},
		do: func(ctx context.Context, cur proto.Message) error {
			model := cur.(*registryv1.Model)
			for _, to := range lifecyclePath(registry.LifecycleStateFromProto(model.GetLifecycleState()), target) {
				resp, err := reg.TransitionModel(ctx, &registryv1.TransitionModelRequest{OrganizationId: m.Organization,
					Name: m.Name, ToState: enumOf[registryv1.LifecycleState]("LIFECYCLE_STATE_", string(to), registryv1.LifecycleState_value),
					EvidenceNote: note, Etag: model.GetEtag()})
				if err != nil {
					return err
				}
				model = resp.GetAfter()
			}
			return nil
		},
	}
	return it
}

// lifecyclePath returns the shortest sequence of states the lifecycle allows from from to
// to (to last, from not included), or nil when there is none.
func lifecyclePath(from, to registry.LifecycleState) []registry.LifecycleState {
	prev := map[registry.LifecycleState]registry.LifecycleState{from: ""}
	queue := []registry.LifecycleState{from}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if s == to {
			var path []registry.LifecycleState
			for ; s != from; s = prev[s] {
				path = append([]registry.LifecycleState{s}, path...)
			}
			return path
		}
		for _, n := range registry.NextStates(s) {
			if _, seen := prev[n]; !seen {
				prev[n] = s
				queue = append(queue, n)
			}
		}
	}
	return nil
}

var policyKeys = []keyPath{
	{"description", "description"}, {"effect", "effect"}, {"subjects", "subjects"}, {"models", "models"},
	{"condition", "condition"}, {"moderation_profile", "obligations.moderation_profile"},
	{"max_output_tokens", "obligations.max_output_tokens"}, {"allowed_endpoint_regions", "obligations.allowed_endpoint_regions"},
	{"allowed_modalities", "obligations.allowed_modalities"}, {"log_retention", "obligations.log_retention"},
	{"log_group", "obligations.log_group"}, {"mask_personal_data", "obligations.mask_personal_data"},
	{"require_baa_coverage", "obligations.require_baa_coverage"},
}

func (a *applier) policy(p resources.Policy, f resources.Fields) item {
	want := &policyv1.Policy{OrganizationId: p.Organization, Id: p.ID, Description: p.Description,
		Effect:   enumOf[policyv1.Effect]("EFFECT_", p.Effect, policyv1.Effect_value),
		Subjects: p.Subjects, Models: p.Models, Condition: p.Condition,
		Obligations: &policyv1.Obligations{ModerationProfile: p.ModerationProfile, MaxOutputTokens: p.MaxOutputTokens,
			AllowedEndpointRegions: p.AllowedEndpointRegions, AllowedModalities: p.AllowedModalities, LogGroup: p.LogGroup,
			MaskPersonalData: p.MaskPersonalData, RequireBaaCoverage: p.RequireBAACoverage}}
	if p.LogRetention != nil {
		want.Obligations.LogRetention = durationpb.New(*p.LogRetention)
	}
	pol := a.c.policy
	return item{kind: "policy", id: id2(p.Organization, p.ID), want: want, paths: declaredPaths(f, policyKeys),
		get: func(ctx context.Context) (proto.Message, error) {
			resp, err := pol.GetPolicy(ctx, &policyv1.GetPolicyRequest{OrganizationId: p.Organization, Id: p.ID})
			return notFound(resp.GetPolicy(), err)
		},
		create: func(ctx context.Context) (proto.Message, error) {
			resp, err := pol.CreatePolicy(ctx, &policyv1.CreatePolicyRequest{OrganizationId: p.Organization, Policy: want})
			return resp.GetAfter(), err
		},
		update: func(ctx context.Context, etag string, mask []string) (proto.Message, error) {
			w := proto.CloneOf(want)
			w.Etag = etag
			resp, err := pol.UpdatePolicy(ctx, &policyv1.UpdatePolicyRequest{OrganizationId: p.Organization, Policy: w,
				UpdateMask: fieldMask(mask...)})
			return resp.GetAfter(), err
		},
	}
}

// license records a licence acceptance unless the team has already accepted that version.
func (a *applier) license(l resources.LicenseAcceptance) {
	const kind = "license acceptance"
	id := l.Organization + "/" + l.Team + "/" + l.Model + "/" + l.LicenseName + "@" + l.LicenseVersion
	ctx := a.c.ctx
	key := [2]string{l.Organization, l.Team}
	accepted, ok := a.licenses[key]
	if !ok {
		var err error
		accepted, err = allPages(func(token string) ([]*identityv1.LicenseAcceptance, string, error) {
			resp, err := a.c.identity.ListLicenseAcceptances(ctx, &identityv1.ListLicenseAcceptancesRequest{
				OrganizationId: l.Organization, TeamId: l.Team, PageSize: 1000, PageToken: token})
			return resp.GetLicenseAcceptances(), resp.GetNextPageToken(), err
		})
		if err != nil {
			a.fail(kind, id, err)
			return
		}
		a.licenses[key] = accepted
	}
	if slices.ContainsFunc(accepted, func(x *identityv1.LicenseAcceptance) bool {
		return x.GetModel() == l.Model && x.GetLicenseName() == l.LicenseName && x.GetLicenseVersion() == l.LicenseVersion
	}) {
		a.unchanged++
		fmt.Fprintf(a.out, "= %s %s unchanged\n", kind, id)
		return
	}
	if a.dryRun {
		a.created++
		fmt.Fprintf(a.out, "+ %s %s would be created\n", kind, id)
		return
	}
	if _, err := a.c.identity.AcceptLicense(ctx, &identityv1.AcceptLicenseRequest{OrganizationId: l.Organization,
		TeamId: l.Team, Model: l.Model, LicenseName: l.LicenseName, LicenseVersion: l.LicenseVersion}); err != nil {
		a.fail(kind, id, err)
		return
	}
	a.created++
	fmt.Fprintf(a.out, "+ %s %s created\n", kind, id)
}

// apiKey creates a declared key that does not exist and whose secret the server is to
// generate, printing the secret once; see applyUsage.
func (a *applier) apiKey(k resources.APIKey) {
	const kind = "api key"
	id := id2(k.Organization, k.ID)
	if !k.Generated() {
		a.skipped++
		fmt.Fprintf(a.out, "- %s %s skipped: its secret comes from secret_env or sha256, which only `fmgate serve --resources` installs\n", kind, id)
		return
	}
	ctx := a.c.ctx
	want := &identityv1.ApiKey{OrganizationId: k.Organization, ApiKeyId: k.ID, DisplayName: k.DisplayName,
		OwnerKind: enumOf[identityv1.PrincipalKind]("PRINCIPAL_KIND_", k.Kind, identityv1.PrincipalKind_value),
		OwnerId:   k.OwnerID(), Subject: k.Subject}
	// The server stores a key without scopes as unset, not as empty scopes: so does the
	// file's, or a second apply would find the stored key different.
	if len(k.Scopes.Models) > 0 || len(k.Scopes.Operations) > 0 {
		want.Scopes = &identityv1.ApiKeyScopes{Models: k.Scopes.Models}
		for _, op := range k.Scopes.Operations {
			want.Scopes.Operations = append(want.Scopes.Operations, enumOf[identityv1.Operation]("OPERATION_", op, identityv1.Operation_value))
		}
	}
	if !k.ExpireTime.IsZero() {
		want.ExpireTime = timestamppb.New(k.ExpireTime)
	}
	resp, err := a.c.identity.GetApiKey(ctx, &identityv1.GetApiKeyRequest{OrganizationId: k.Organization, ApiKeyId: k.ID})
	cur, err := notFound(resp.GetApiKey(), err)
	if err != nil {
		a.fail(kind, id, err)
		return
	}
	if cur != nil {
		changes := diff(want, cur, []string{"display_name", "subject", "expire_time", "scopes"})
		if len(changes) > 0 {
			var ds []string
			for _, c := range changes {
				ds = append(ds, fmt.Sprintf("%s: %s → %s", c.path, c.old, c.new))
			}
			a.failed++
			fmt.Fprintf(a.out, "! %s %s differs from the file (%s); API keys cannot change: revoke it and declare a key with a new id\n",
				kind, id, strings.Join(ds, "; "))
			return
		}
		a.unchanged++
		note := ""
		if rt := cur.(*identityv1.ApiKey).GetRevokeTime(); rt != nil {
			note = " (revoked " + rt.AsTime().Format("2006-01-02T15:04:05Z") + ")"
		}
		fmt.Fprintf(a.out, "= %s %s unchanged%s\n", kind, id, note)
		return
	}
	if a.dryRun {
		a.created++
		fmt.Fprintf(a.out, "+ %s %s would be created for %s (the server generates its secret)\n", kind, id, k.Subject)
		return
	}
	created, err := a.c.identity.CreateApiKey(ctx, &identityv1.CreateApiKeyRequest{OrganizationId: k.Organization,
		ApiKeyId: k.ID, DisplayName: k.DisplayName, OwnerKind: want.GetOwnerKind(), OwnerId: want.GetOwnerId(),
		ExpireTime: want.GetExpireTime(), Scopes: want.GetScopes()})
	if err != nil {
		a.fail(kind, id, err)
		return
	}
	a.created++
	fmt.Fprintf(a.out, "+ %s %s created for %s\n    secret: %s\n    warning: this secret is shown once and never again; store it now\n",
		kind, id, k.Subject, created.GetSecret())
}

// enumOf returns the enum value named prefix + upper(v), or 0 (unspecified; the server names
// the field) for an empty or unknown v. resources.Validate checks the values beforehand.
func enumOf[E ~int32](prefix, v string, values map[string]int32) E {
	if v == "" {
		return 0
	}
	return E(values[prefix+strings.ToUpper(v)])
}

func fieldMask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

// diff returns the fields at paths whose values differ between want and cur.
func diff(want, cur proto.Message, paths []string) []change {
	var out []change
	for _, p := range paths {
		fd, wv, wHas := valueAt(want.ProtoReflect(), p)
		_, cv, cHas := valueAt(cur.ProtoReflect(), p)
		if fd == nil || fieldEqual(fd, wv, cv, wHas, cHas) {
			continue
		}
		out = append(out, change{path: p, old: formatValue(fd, cv, cHas), new: formatValue(fd, wv, wHas)})
	}
	return out
}

// valueAt returns the field at a dotted proto path of m, its value and whether it is set.
func valueAt(m protoreflect.Message, path string) (protoreflect.FieldDescriptor, protoreflect.Value, bool) {
	parts := strings.Split(path, ".")
	for i, part := range parts {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(part))
		if fd == nil {
			return nil, protoreflect.Value{}, false
		}
		if i == len(parts)-1 {
			return fd, m.Get(fd), m.Has(fd)
		}
		m = m.Get(fd).Message()
	}
	return nil, protoreflect.Value{}, false
}

func fieldEqual(fd protoreflect.FieldDescriptor, a, b protoreflect.Value, aHas, bHas bool) bool {
	switch {
	case fd.IsList():
		la, lb := a.List(), b.List()
		if la.Len() != lb.Len() {
			return false
		}
		for i := range la.Len() {
			if !singularEqual(fd, la.Get(i), lb.Get(i)) {
				return false
			}
		}
		return true
	case fd.IsMap():
		ma, mb := a.Map(), b.Map()
		if ma.Len() != mb.Len() {
			return false
		}
		eq := true
		ma.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			eq = mb.Has(k) && singularEqual(fd.MapValue(), v, mb.Get(k))
			return eq
		})
		return eq
	case fd.HasPresence() && fd.Message() == nil && aHas != bHas:
		return false
	}
	return singularEqual(fd, a, b)
}

func singularEqual(fd protoreflect.FieldDescriptor, a, b protoreflect.Value) bool {
	if fd.Message() != nil {
		return proto.Equal(a.Message().Interface(), b.Message().Interface())
	}
	return a.Equal(b)
}

// formatValue prints a field's value for a person.
func formatValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, has bool) string {
	switch {
	case fd.IsList():
		l := v.List()
		parts := make([]string, l.Len())
		for i := range l.Len() {
			parts[i] = formatSingular(fd, l.Get(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case fd.IsMap():
		m := v.Map()
		byKey := map[string]string{}
		m.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			byKey[k.String()] = formatSingular(fd.MapValue(), v)
			return true
		})
		parts := make([]string, 0, len(byKey))
		for _, k := range slices.Sorted(maps.Keys(byKey)) {
			parts = append(parts, k+": "+byKey[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case fd.HasPresence() && !has:
		return "unset"
	}
	return formatSingular(fd, v)
}

func formatSingular(fd protoreflect.FieldDescriptor, v protoreflect.Value) string {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return strconv.Quote(v.String())
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
		return strconv.Itoa(int(v.Enum()))
	case protoreflect.MessageKind:
		b, err := protojson.Marshal(v.Message().Interface())
		if err != nil {
			return "?"
		}
		return string(b)
	}
	return fmt.Sprint(v.Interface())
}

// formatAt prints the value at path of m.
func formatAt(m proto.Message, path string) string {
	fd, v, has := valueAt(m.ProtoReflect(), path)
	if fd == nil {
		return "?"
	}
	return formatValue(fd, v, has)
}
