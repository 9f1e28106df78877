package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/config"
)

const adminUsage = `Usage:
  fmgate keys create --owner user:ID|svc:ID [--id ID] [--display-name S] [--expire-in 720h] [--models a,b] [--operations generate,embed]
  fmgate keys list [--team T]
  fmgate keys get ID
  fmgate keys revoke ID
  fmgate models list [--state approved,deprecated] [--vendor V] [--tag T]
  fmgate models get NAME
  fmgate models transition NAME --to STATE --note "why"
  fmgate policies list
  fmgate policies get ID
  fmgate explain --principal user:ID|svc:ID --model NAME [--team T] [--role R]... [--attr k=v]...
  fmgate licenses accept --team T --model NAME [--license-name N --license-version V]
  fmgate licenses list [--team T]

Every command calls the admin API at --server (FMGATE_SERVER) with the credential in
FMGATE_TOKEN or --token-file, in the caller's organisation unless --organization names it.
Output is a table; -o json prints the response as JSON.
`

// adminCommand is one admin command: its flags, and what it does with the clients.
type adminCommand struct {
	name string
	// args are the positional arguments it takes ("ID"), after its flags or before them.
	args  []string
	flags func(fs *flag.FlagSet)
	run   func(c *adminClients, cmd *cliRun) error
}

// cliRun is one run of an admin command.
type cliRun struct {
	org    string
	args   []string
	out    io.Writer
	output outputFormat
}

// adminCmd runs `fmgate <group> <command> ...` for the groups keys, models, policies,
// licenses, and `fmgate explain`.
func adminCmd(ctx context.Context, group string, args []string, stdout, stderr io.Writer) error {
	var cmds []adminCommand
	name := group
	if group == "explain" {
		cmds = []adminCommand{explainCommand()}
	} else {
		if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			fmt.Fprint(stderr, adminUsage)
			if len(args) == 0 {
				return fmt.Errorf("%s: a command is required", group)
			}
			return nil
		}
		name, args = args[0], args[1:]
		cmds = adminCommands()[group]
	}
	i := slices.IndexFunc(cmds, func(c adminCommand) bool { return c.name == name })
	if i < 0 {
		fmt.Fprint(stderr, adminUsage)
		return fmt.Errorf("%s: unknown command %q", group, name)
	}
	cmd := cmds[i]
	fs := flag.NewFlagSet("fmgate "+strings.TrimSpace(group+" "+strings.TrimPrefix(cmd.name, group)), flag.ContinueOnError)
	fs.SetOutput(stderr)
	var af adminFlags
	af.register(fs)
	r := &cliRun{out: stdout, output: "table"}
	fs.StringVar(&r.org, "organization", "", "organization (default: the caller's)")
	fs.Var(&r.output, "o", "output: table or json")
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	// Positional arguments may come first ("keys get ID --server ...").
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		r.args, args = append(r.args, args[0]), args[1:]
	}
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	r.args = append(r.args, fs.Args()...)
	if len(r.args) != len(cmd.args) {
		return fmt.Errorf("%s %s: want %d argument(s) %s, got %d", group, cmd.name, len(cmd.args), strings.Join(cmd.args, " "), len(r.args))
	}
	c, err := af.dial(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	if err := cmd.run(c, r); err != nil {
		var ce callError
		if errors.As(err, &ce) {
			fmt.Fprintln(stderr, "fmgate:", ce.Error())
			return errAdminCall
		}
		return err
	}
	return nil
}

// errAdminCall ends an admin command whose call failed, once the status is printed.
var errAdminCall = errors.New("the call failed")

// respond prints resp as JSON with -o json, else calls table.
func (r *cliRun) respond(resp proto.Message, err error, table func(w *tabwriter.Writer)) error {
	if err != nil {
		return callError{err}
	}
	if r.output == "json" {
		return printJSON(r.out, resp)
	}
	w := tabwriter.NewWriter(r.out, 0, 0, 2, ' ', 0)
	table(w)
	return w.Flush()
}

func ts(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func list(s []string) string { return dash(strings.Join(s, ",")) }

func enumName(s fmt.Stringer, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), prefix))
}

// listFlag collects a comma-separated or repeated flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// owner parses "user:ID" or "svc:ID".
func owner(s string) (identityv1.PrincipalKind, string, error) {
	if id, ok := strings.CutPrefix(s, "user:"); ok && id != "" {
		return identityv1.PrincipalKind_PRINCIPAL_KIND_USER, id, nil
	}
	if id, ok := strings.CutPrefix(s, "svc:"); ok && id != "" {
		return identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT, id, nil
	}
	return 0, "", fmt.Errorf("want user:ID or svc:ID, not %q", s)
}

// adminCommands returns the commands of each group, with fresh flag variables: run may be
// called more than once in one process (tests do).
func adminCommands() map[string][]adminCommand {
	return map[string][]adminCommand{
		"keys":     keyCommands(),
		"models":   modelCommands(),
		"policies": policyCommands(),
		"licenses": licenseCommands(),
	}
}

func keyTable(w *tabwriter.Writer, keys ...*identityv1.ApiKey) {
	fmt.Fprintln(w, "ID\tSUBJECT\tTEAM\tPREFIX\tCREATED\tEXPIRES\tREVOKED\tSCOPES")
	for _, k := range keys {
		scopes := list(k.GetScopes().GetModels())
		for _, op := range k.GetScopes().GetOperations() {
			scopes += " " + enumName(op, "OPERATION_")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.GetApiKeyId(), k.GetSubject(), dash(k.GetTeamId()), k.GetPrefix(),
			ts(k.GetCreateTime()), ts(k.GetExpireTime()), ts(k.GetRevokeTime()), scopes)
	}
}

func keyCommands() []adminCommand {
	var (
		id, displayName, ownerRef, team string
		expireIn                        time.Duration
		models, ops                     listFlag
	)
	return []adminCommand{
		{name: "create", flags: func(fs *flag.FlagSet) {
			fs.StringVar(&ownerRef, "owner", "", "who holds the key: user:ID or svc:ID (required)")
			fs.StringVar(&id, "id", "", "key id (default: generated)")
			fs.StringVar(&displayName, "display-name", "", "display name")
			fs.StringVar(&team, "team", "", "refuse unless the owner is in this team")
			fs.DurationVar(&expireIn, "expire-in", 0, "expire after this long (default: never)")
			fs.Var(&models, "models", "model name patterns the key may use (comma-separated; default: any)")
			fs.Var(&ops, "operations", "operations the key may call: generate, embed, list_models (default: any)")
		}, run: func(c *adminClients, r *cliRun) error {
			kind, oid, err := owner(ownerRef)
			if err != nil {
				return fmt.Errorf("--owner: %w", err)
			}
			req := &identityv1.CreateApiKeyRequest{OrganizationId: r.org, ApiKeyId: id, DisplayName: displayName,
				OwnerKind: kind, OwnerId: oid, TeamId: team, Scopes: &identityv1.ApiKeyScopes{Models: models}}
			for _, op := range ops {
				v, ok := identityv1.Operation_value["OPERATION_"+strings.ToUpper(op)]
				if !ok {
					return fmt.Errorf("--operations: %q is not one of generate, embed, list_models", op)
				}
				req.Scopes.Operations = append(req.Scopes.Operations, identityv1.Operation(v))
			}
			if expireIn > 0 {
				req.ExpireTime = timestamppb.New(time.Now().Add(expireIn))
			}
			resp, err := c.identity.CreateApiKey(c.ctx, req)
			return r.respond(resp, err, func(w *tabwriter.Writer) {
				keyTable(w, resp.GetApiKey())
				fmt.Fprintf(w, "\nsecret: %s\nwarning: this secret is shown once and never again; store it now\n", resp.GetSecret())
			})
		}},
		{name: "list", flags: func(fs *flag.FlagSet) {
			fs.StringVar(&team, "team", "", "only this team's keys")
		}, run: func(c *adminClients, r *cliRun) error {
			keys, err := allPages(func(token string) ([]*identityv1.ApiKey, string, error) {
				page, err := c.identity.ListApiKeys(c.ctx, &identityv1.ListApiKeysRequest{OrganizationId: r.org, TeamId: team,
					PageSize: 1000, PageToken: token})
				return page.GetApiKeys(), page.GetNextPageToken(), err
			})
			resp := &identityv1.ListApiKeysResponse{ApiKeys: keys}
			return r.respond(resp, err, func(w *tabwriter.Writer) { keyTable(w, keys...) })
		}},
		{name: "get", args: []string{"ID"}, run: func(c *adminClients, r *cliRun) error {
			resp, err := c.identity.GetApiKey(c.ctx, &identityv1.GetApiKeyRequest{OrganizationId: r.org, ApiKeyId: r.args[0]})
			return r.respond(resp, err, func(w *tabwriter.Writer) { keyTable(w, resp.GetApiKey()) })
		}},
		{name: "revoke", args: []string{"ID"}, run: func(c *adminClients, r *cliRun) error {
			resp, err := c.identity.RevokeApiKey(c.ctx, &identityv1.RevokeApiKeyRequest{OrganizationId: r.org, ApiKeyId: r.args[0]})
			return r.respond(resp, err, func(w *tabwriter.Writer) { keyTable(w, resp.GetApiKey()) })
		}},
	}
}

func modelTable(w *tabwriter.Writer, models ...*registryv1.Model) {
	fmt.Fprintln(w, "NAME\tSTATE\tVENDOR\tDISPLAY NAME\tENDPOINTS\tLICENSE")
	for _, m := range models {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", m.GetName(), enumName(m.GetLifecycleState(), "LIFECYCLE_STATE_"),
			dash(m.GetVendor()), dash(m.GetDisplayName()), list(m.GetEndpointIds()), dash(m.GetLicense().GetName()))
	}
}

func modelCommands() []adminCommand {
	var (
		states        listFlag
		vendor, tag   string
		toState, note string
	)
	return []adminCommand{
		{name: "list", flags: func(fs *flag.FlagSet) {
			fs.Var(&states, "state", "only models in these lifecycle states (comma-separated)")
			fs.StringVar(&vendor, "vendor", "", "only this vendor's models")
			fs.StringVar(&tag, "tag", "", "only models with this use-case tag")
		}, run: func(c *adminClients, r *cliRun) error {
			req := &registryv1.ListCatalogModelsRequest{OrganizationId: r.org, Vendor: vendor, UseCaseTag: tag, PageSize: 1000}
			for _, s := range states {
				v, ok := registryv1.LifecycleState_value["LIFECYCLE_STATE_"+strings.ToUpper(s)]
				if !ok {
					return fmt.Errorf("--state: %q is not a lifecycle state", s)
				}
				req.LifecycleStates = append(req.LifecycleStates, registryv1.LifecycleState(v))
			}
			models, err := allPages(func(token string) ([]*registryv1.Model, string, error) {
				req.PageToken = token
				page, err := c.registry.ListCatalogModels(c.ctx, req)
				return page.GetModels(), page.GetNextPageToken(), err
			})
			resp := &registryv1.ListCatalogModelsResponse{Models: models}
			return r.respond(resp, err, func(w *tabwriter.Writer) { modelTable(w, models...) })
		}},
		{name: "get", args: []string{"NAME"}, run: func(c *adminClients, r *cliRun) error {
			resp, err := c.registry.GetModel(c.ctx, &registryv1.GetModelRequest{OrganizationId: r.org, Name: r.args[0]})
			return r.respond(resp, err, func(w *tabwriter.Writer) { fieldTable(w, resp.GetModel()) })
		}},
		{name: "transition", args: []string{"NAME"}, flags: func(fs *flag.FlagSet) {
			fs.StringVar(&toState, "to", "", "lifecycle state to move to: proposed, evaluating, approved, deprecated, retired (required)")
			fs.StringVar(&note, "note", "", "evidence note: why (required)")
		}, run: func(c *adminClients, r *cliRun) error {
			v, ok := registryv1.LifecycleState_value["LIFECYCLE_STATE_"+strings.ToUpper(toState)]
			if !ok || v == 0 {
				return fmt.Errorf("--to: %q is not a lifecycle state", toState)
			}
			resp, err := c.registry.TransitionModel(c.ctx, &registryv1.TransitionModelRequest{OrganizationId: r.org,
				Name: r.args[0], ToState: registryv1.LifecycleState(v), EvidenceNote: note})
			return r.respond(resp, err, func(w *tabwriter.Writer) {
				t := resp.GetTransition()
				fmt.Fprintf(w, "model %s: %s → %s by %s at %s\n", t.GetModel(), enumName(t.GetFromState(), "LIFECYCLE_STATE_"),
					enumName(t.GetToState(), "LIFECYCLE_STATE_"), t.GetActor(), ts(t.GetCreateTime()))
			})
		}},
	}
}

// fieldTable prints every set field of m, one per line, as in a diff.
func fieldTable(w *tabwriter.Writer, m proto.Message) {
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !r.Has(fd) {
			continue
		}
		fmt.Fprintf(w, "%s:\t%s\n", fd.Name(), formatValue(fd, r.Get(fd), true))
	}
}

func policyCommands() []adminCommand {
	return []adminCommand{
		{name: "list", run: func(c *adminClients, r *cliRun) error {
			policies, err := allPages(func(token string) ([]*policyv1.Policy, string, error) {
				page, err := c.policy.ListPolicies(c.ctx, &policyv1.ListPoliciesRequest{OrganizationId: r.org, PageSize: 1000, PageToken: token})
				return page.GetPolicies(), page.GetNextPageToken(), err
			})
			resp := &policyv1.ListPoliciesResponse{Policies: policies}
			return r.respond(resp, err, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ID\tEFFECT\tREVISION\tSUBJECTS\tMODELS\tCONDITION")
				for _, p := range policies {
					fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\n", p.GetId(), enumName(p.GetEffect(), "EFFECT_"), p.GetRevision(),
						list(p.GetSubjects()), list(p.GetModels()), dash(p.GetCondition()))
				}
			})
		}},
		{name: "get", args: []string{"ID"}, run: func(c *adminClients, r *cliRun) error {
			resp, err := c.policy.GetPolicy(c.ctx, &policyv1.GetPolicyRequest{OrganizationId: r.org, Id: r.args[0]})
			return r.respond(resp, err, func(w *tabwriter.Writer) { fieldTable(w, resp.GetPolicy()) })
		}},
	}
}

func explainCommand() adminCommand {
	var (
		principal, model, team string
		roles, attrs, mods     listFlag
		maxTokens              int
		stream                 bool
	)
	return adminCommand{name: "explain", flags: func(fs *flag.FlagSet) {
		fs.StringVar(&principal, "principal", "", "subject to explain for: user:ID or svc:ID; a stored account's team, roles and attributes are read (required)")
		fs.StringVar(&model, "model", "", "model name (required)")
		fs.StringVar(&team, "team", "", "team of the principal (overrides the stored one)")
		fs.Var(&roles, "role", "role of the principal (repeatable; replaces the stored ones)")
		fs.Var(&attrs, "attr", "attribute key=value of the principal (repeatable; overrides the stored one)")
		fs.Var(&mods, "modalities", "input modalities of the request (default: text)")
		fs.IntVar(&maxTokens, "max-tokens", 0, "max_output_tokens of the request")
		fs.BoolVar(&stream, "stream", false, "the request streams")
	}, run: func(c *adminClients, r *cliRun) error {
		if principal == "" || model == "" {
			return errors.New("explain: --principal and --model are required")
		}
		p, err := explainPrincipal(c, r.org, principal)
		if err != nil {
			return err
		}
		if team != "" {
			p.TeamId = team
		}
		if len(roles) > 0 {
			p.Roles = roles
		}
		for _, kv := range attrs {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("--attr: want key=value, not %q", kv)
			}
			p.Attributes[k] = v
		}
		if len(mods) == 0 {
			mods = listFlag{"text"}
		}
		req := &policyv1.ExplainRequest{Principal: p, Model: model,
			Request: &policyv1.RequestFacts{MessageCount: 1, Stream: stream, MaxOutputTokens: int32(maxTokens), Modalities: mods}}
		// The model's and its endpoints' facts, as the gateway sends them; a model that does
		// not exist has none.
		m, err := c.registry.GetModel(c.ctx, &registryv1.GetModelRequest{OrganizationId: r.org, Name: model})
		if err := unlessNotFound(err); err != nil {
			return err
		}
		if m.GetModel() != nil {
			req.ModelFacts = &policyv1.ModelFacts{Name: model, Vendor: m.GetModel().GetVendor(),
				LifecycleState: enumName(m.GetModel().GetLifecycleState(), "LIFECYCLE_STATE_")}
			eps, err := allPages(func(token string) ([]*registryv1.Endpoint, string, error) {
				resp, err := c.registry.ListEndpoints(c.ctx, &registryv1.ListEndpointsRequest{OrganizationId: r.org,
					PageSize: 1000, PageToken: token})
				return resp.GetEndpoints(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return callError{err}
			}
			for _, id := range m.GetModel().GetEndpointIds() {
				for _, e := range eps {
					if e.GetId() == id {
						req.Endpoints = append(req.Endpoints, &policyv1.EndpointFacts{Id: id, Region: e.GetRegion(),
							Provider: enumName(e.GetProvider(), "PROVIDER_KIND_"), CoveredByBaa: e.GetCoveredByBaa()})
					}
				}
			}
		}
		resp, err := c.policy.Explain(c.ctx, req)
		return r.respond(resp, err, func(w *tabwriter.Writer) { explainTable(w, resp) })
	}}
}

// explainPrincipal is the principal of subject as identity stores it: a user's or service
// account's team, roles and attributes when stored, else the subject alone.
func explainPrincipal(c *adminClients, org, subject string) (*identityv1.Principal, error) {
	kind, id, err := owner(subject)
	if err != nil {
		return nil, fmt.Errorf("--principal: %w", err)
	}
	p := &identityv1.Principal{OrganizationId: org, Subject: subject, Kind: kind, Attributes: map[string]string{}}
	var team string
	var roles []string
	var attrs map[string]string
	if kind == identityv1.PrincipalKind_PRINCIPAL_KIND_USER {
		u, err := c.identity.GetUser(c.ctx, &identityv1.GetUserRequest{OrganizationId: org, Id: id})
		if err := unlessNotFound(err); err != nil {
			return nil, err
		}
		team, roles, attrs = u.GetUser().GetTeamId(), u.GetUser().GetRoles(), u.GetUser().GetAttributes()
	} else {
		s, err := c.identity.GetServiceAccount(c.ctx, &identityv1.GetServiceAccountRequest{OrganizationId: org, Id: id})
		if err := unlessNotFound(err); err != nil {
			return nil, err
		}
		team, roles, attrs = s.GetServiceAccount().GetTeamId(), s.GetServiceAccount().GetRoles(), s.GetServiceAccount().GetAttributes()
	}
	if team != "" {
		// A team may be named without a record: then it has no attributes.
		t, err := c.identity.GetTeam(c.ctx, &identityv1.GetTeamRequest{OrganizationId: org, Id: team})
		if err := unlessNotFound(err); err != nil {
			return nil, err
		}
		for k, v := range t.GetTeam().GetAttributes() {
			p.Attributes[k] = v
		}
	}
	for k, v := range attrs {
		p.Attributes[k] = v
	}
	p.TeamId, p.Roles = team, roles
	return p, nil
}

// unlessNotFound is the callError of a failed read, or nil when the read succeeded or
// found nothing (NOT_FOUND). Any other failure, PERMISSION_DENIED or UNAVAILABLE, must end
// explain: explaining without what could not be read would give a wrong answer.
func unlessNotFound(err error) error {
	if err == nil || status.Code(err) == codes.NotFound {
		return nil
	}
	return callError{err}
}

func explainTable(w *tabwriter.Writer, resp *policyv1.ExplainResponse) {
	fmt.Fprintf(w, "decision: %s\n", enumName(resp.GetDecision(), "DECISION_"))
	for _, r := range resp.GetReasons() {
		fmt.Fprintf(w, "reason: %s\n", r)
	}
	fmt.Fprintln(w, "\nPOLICY\tEFFECT\tREV\tSUBJECTS\tMODELS\tCONDITION\tFIRED")
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	for _, t := range resp.GetPolicies() {
		cond := enumName(t.GetCondition(), "CONDITION_RESULT_")
		if t.GetConditionError() != "" {
			cond += ": " + t.GetConditionError()
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", t.GetPolicyId(), enumName(t.GetEffect(), "EFFECT_"), t.GetRevision(),
			yes(t.GetSubjectsMatched()), yes(t.GetModelsMatched()), cond, yes(t.GetFired()))
	}
	if len(resp.GetEndpoints()) > 0 {
		fmt.Fprintln(w, "\nENDPOINT\tALLOWED\tWHY NOT")
		for _, e := range resp.GetEndpoints() {
			fmt.Fprintf(w, "%s\t%s\t%s\n", e.GetEndpointId(), yes(e.GetAllowed()), dash(e.GetReason()))
		}
	}
	if o := resp.GetObligations(); o != nil && proto.Size(o) > 0 {
		fmt.Fprintln(w)
		fieldTable(w, o)
	}
	if resp.GetExplanation() != "" {
		fmt.Fprintf(w, "\n%s\n", resp.GetExplanation())
	}
}

func licenseCommands() []adminCommand {
	var team, model, name, version string
	return []adminCommand{
		{name: "accept", flags: func(fs *flag.FlagSet) {
			fs.StringVar(&team, "team", "", "team that accepts (required)")
			fs.StringVar(&model, "model", "", "model whose licence is accepted (required)")
			fs.StringVar(&name, "license-name", "", "licence name (default: the model card's)")
			fs.StringVar(&version, "license-version", "", "licence version (default: the model card's)")
		}, run: func(c *adminClients, r *cliRun) error {
			if name == "" || version == "" {
				m, err := c.registry.GetModel(c.ctx, &registryv1.GetModelRequest{OrganizationId: r.org, Name: model})
				if err != nil {
					return callError{err}
				}
				if name == "" {
					name = m.GetModel().GetLicense().GetName()
				}
				if version == "" {
					version = m.GetModel().GetLicense().GetVersion()
				}
			}
			resp, err := c.identity.AcceptLicense(c.ctx, &identityv1.AcceptLicenseRequest{OrganizationId: r.org, TeamId: team,
				Model: model, LicenseName: name, LicenseVersion: version})
			return r.respond(resp, err, func(w *tabwriter.Writer) { licenseTable(w, resp.GetAfter()) })
		}},
		{name: "list", flags: func(fs *flag.FlagSet) {
			fs.StringVar(&team, "team", "", "only this team's acceptances")
		}, run: func(c *adminClients, r *cliRun) error {
			accepted, err := allPages(func(token string) ([]*identityv1.LicenseAcceptance, string, error) {
				page, err := c.identity.ListLicenseAcceptances(c.ctx, &identityv1.ListLicenseAcceptancesRequest{OrganizationId: r.org,
					TeamId: team, PageSize: 1000, PageToken: token})
				return page.GetLicenseAcceptances(), page.GetNextPageToken(), err
			})
			resp := &identityv1.ListLicenseAcceptancesResponse{LicenseAcceptances: accepted}
			return r.respond(resp, err, func(w *tabwriter.Writer) { licenseTable(w, accepted...) })
		}},
	}
}

func licenseTable(w *tabwriter.Writer, as ...*identityv1.LicenseAcceptance) {
	fmt.Fprintln(w, "TEAM\tMODEL\tLICENSE\tVERSION\tACCEPTED BY\tACCEPTED")
	for _, a := range as {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", a.GetTeamId(), a.GetModel(), a.GetLicenseName(), a.GetLicenseVersion(),
			a.GetAcceptedBy(), ts(a.GetAcceptTime()))
	}
}
