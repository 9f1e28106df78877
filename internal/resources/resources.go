// Package resources reads declarative resource files: everything an fmgate deployment is
// configured with, as code reviewed in git. A file declares organisations, custom roles,
// teams, users, service accounts, endpoints, models (the whole card and the lifecycle
// state), policies, licence acceptances, API keys, rate limits and vendor credentials.
//
// Two things consume a file. `fmgate serve --resources FILE` seeds it at every start: each
// service writes the part it owns straight into its store, idempotently. `fmgate apply -f
// FILE` reconciles a running deployment with it through the admin API: it creates what is
// missing and changes, on what exists, exactly the fields the file declares (File.Declared
// tells which keys an entry spells out), so that applying a file twice changes nothing the
// second time.
//
// Secrets are never in a file: API keys give the name of the environment variable holding
// the secret or its SHA-256, or no secret at all (apply then has the server generate one);
// vendor credentials give the environment variable holding the value.
package resources

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// File is a resource file.
type File struct {
	Organizations   []Organization   `yaml:"organizations"`
	Roles           []Role           `yaml:"roles"`
	Teams           []Team           `yaml:"teams"`
	Users           []User           `yaml:"users"`
	ServiceAccounts []ServiceAccount `yaml:"service_accounts"`
	Models          []Model          `yaml:"models"`
	Endpoints       []Endpoint       `yaml:"endpoints"`
	APIKeys         []APIKey         `yaml:"api_keys"`
	Policies        []Policy         `yaml:"policies"`
	// LicenseAcceptances record that teams accepted models' licences.
	LicenseAcceptances []LicenseAcceptance `yaml:"license_acceptances"`
	Limits             []Limit             `yaml:"limits"`
	// Credentials are sealed into dispatch's credential store at start.
	Credentials []Credential `yaml:"credentials"`

	// declared holds, by section and index, the keys each entry of a parsed file spells out.
	declared map[string][]Fields
}

// Organization is the record of an organisation: the name it goes by. Other entries name
// their organisation by id whether or not it has a record.
type Organization struct {
	ID          string `yaml:"id"`
	DisplayName string `yaml:"display_name"`
}

// Role is a custom role: a named set of permissions ("models.read", "keys.write", ...)
// granted across the organisation (scope "organization") or only within the holder's team
// (scope "team").
type Role struct {
	Organization string   `yaml:"organization"`
	ID           string   `yaml:"id"`
	DisplayName  string   `yaml:"display_name"`
	Scope        string   `yaml:"scope"`
	Permissions  []string `yaml:"permissions"`
}

// Team groups users and service accounts; its attributes (jurisdiction, handles_phi, ...)
// are its members' unless their own override them.
type Team struct {
	Organization string            `yaml:"organization"`
	ID           string            `yaml:"id"`
	DisplayName  string            `yaml:"display_name"`
	Attributes   map[string]string `yaml:"attributes"`
}

// User is a person of an organisation.
type User struct {
	Organization string            `yaml:"organization"`
	ID           string            `yaml:"id"`
	Email        string            `yaml:"email"`
	DisplayName  string            `yaml:"display_name"`
	Team         string            `yaml:"team"`
	Roles        []string          `yaml:"roles"`
	Attributes   map[string]string `yaml:"attributes"`
	Disabled     bool              `yaml:"disabled"`
}

// ServiceAccount is a program of an organisation; as User, without an email.
type ServiceAccount struct {
	Organization string            `yaml:"organization"`
	ID           string            `yaml:"id"`
	DisplayName  string            `yaml:"display_name"`
	Team         string            `yaml:"team"`
	Roles        []string          `yaml:"roles"`
	Attributes   map[string]string `yaml:"attributes"`
	Disabled     bool              `yaml:"disabled"`
}

// Model is a model of an organisation's catalogue, with its card.
type Model struct {
	Organization string `yaml:"organization"`
	Name         string `yaml:"name"`
	DisplayName  string `yaml:"display_name"`
	Vendor       string `yaml:"vendor"`
	// Lifecycle is the state the model is to be in: proposed, evaluating, approved,
	// deprecated or retired. Apply moves the model there along the lifecycle's transitions.
	Lifecycle string `yaml:"lifecycle"`
	// EvidenceNote is recorded with each lifecycle transition apply makes; empty, apply
	// records "applied from <file>".
	EvidenceNote          string   `yaml:"evidence_note"`
	ContextWindow         int32    `yaml:"context_window"`
	InputPricePerMillion  float64  `yaml:"input_price_per_million"`
	OutputPricePerMillion float64  `yaml:"output_price_per_million"`
	Endpoints             []string `yaml:"endpoints"`
	// FallbackModels are models whose endpoints are tried, in order, after this model's.
	FallbackModels []string `yaml:"fallback_models"`

	Family           string       `yaml:"family"`
	Version          string       `yaml:"version"`
	InputModalities  []string     `yaml:"input_modalities"`
	OutputModalities []string     `yaml:"output_modalities"`
	MaxOutputTokens  int32        `yaml:"max_output_tokens"`
	Capabilities     Capabilities `yaml:"capabilities"`
	// PricePerImage is in US dollars per image generated or read.
	PricePerImage     float64            `yaml:"price_per_image"`
	Regions           []string           `yaml:"regions"`
	IntendedUses      []string           `yaml:"intended_uses"`
	UseCaseTags       []string           `yaml:"use_case_tags"`
	Limitations       []string           `yaml:"limitations"`
	EvaluationMetrics map[string]float64 `yaml:"evaluation_metrics"`
	License           License            `yaml:"license"`
	DataHandling      DataHandling       `yaml:"data_handling"`
	SuccessorModel    string             `yaml:"successor_model"`
	VendorModelID     string             `yaml:"vendor_model_id"`
}

// Capabilities are the features a model supports.
type Capabilities struct {
	Tools      bool `yaml:"tools"`
	Vision     bool `yaml:"vision"`
	JSONOutput bool `yaml:"json_output"`
}

// License is the licence or EULA a model is used under.
type License struct {
	Name    string `yaml:"name"`
	URL     string `yaml:"url"`
	Version string `yaml:"version"`
	// AcceptanceRequired says a team must accept it (license_acceptances) before use.
	AcceptanceRequired bool `yaml:"acceptance_required"`
}

// DataHandling is what the vendor does with the data sent to the model.
type DataHandling struct {
	// RetentionDays: unset when unknown, 0 when the vendor keeps nothing.
	RetentionDays   *int32 `yaml:"retention_days"`
	UsedForTraining bool   `yaml:"used_for_training"`
}

// Endpoint is a place a model is served.
type Endpoint struct {
	Organization  string `yaml:"organization"`
	ID            string `yaml:"id"`
	Provider      string `yaml:"provider"`
	BaseURL       string `yaml:"base_url"`
	UpstreamModel string `yaml:"upstream_model"`
	CredentialRef string `yaml:"credential_ref"`
	Region        string `yaml:"region"`
	// Weight shares traffic among endpoints of equal priority (0 means 1).
	Weight int32 `yaml:"weight"`
	// Priority orders a model's endpoints: lower values are tried first.
	Priority int32 `yaml:"priority"`
	// APIVersion is the vendor API version (required for azure_openai).
	APIVersion string `yaml:"api_version"`
	// CoveredByBAA says the vendor has signed a business associate agreement (HIPAA) with
	// the organisation; policies (the HIPAA pack) send protected health information only to
	// covered endpoints.
	CoveredByBAA bool `yaml:"covered_by_baa"`
}

// APIKey is an API key. The secret itself is never in the file. Either SecretEnv names the
// environment variable holding it, or SHA256 is the hex SHA-256 of it: such keys are
// installed by `fmgate serve --resources` (they carry their own team, roles and attributes
// unless their owner is stored). Or neither is set: the key belongs to the stored user or
// service account that Kind and Subject name ("user:alice", "svc:batch"), and `fmgate
// apply` has the server generate its secret, printed once, when the key does not exist.
type APIKey struct {
	Organization string            `yaml:"organization"`
	ID           string            `yaml:"id"`
	DisplayName  string            `yaml:"display_name"`
	Subject      string            `yaml:"subject"`
	Kind         string            `yaml:"kind"`
	Team         string            `yaml:"team"`
	Roles        []string          `yaml:"roles"`
	Attributes   map[string]string `yaml:"attributes"`
	Scopes       Scopes            `yaml:"scopes"`
	SecretEnv    string            `yaml:"secret_env"`
	SHA256       string            `yaml:"sha256"`
	ExpireTime   time.Time         `yaml:"expire_time"`
}

// Generated reports whether the key's secret is generated by the server (no secret_env, no
// sha256).
func (k APIKey) Generated() bool { return k.SecretEnv == "" && k.SHA256 == "" }

// OwnerID is the id of the key's user or service account: its subject without "user:" or
// "svc:".
func (k APIKey) OwnerID() string {
	return strings.TrimPrefix(k.Subject, subjectPrefix[k.Kind])
}

var subjectPrefix = map[string]string{"user": "user:", "service_account": "svc:"}

// Scopes narrow what a key may do: model name patterns and operations (generate, embed,
// list_models). Empty lists do not narrow.
type Scopes struct {
	Models     []string `yaml:"models"`
	Operations []string `yaml:"operations"`
}

// Credential is a vendor credential of an organisation, which dispatch keeps sealed
// (encrypted under the master key) in its store and endpoints of that organisation name as
// "store:NAME". The value is never in the file: ValueEnv names the environment variable
// holding it.
type Credential struct {
	Organization string `yaml:"organization"`
	Name         string `yaml:"name"`
	ValueEnv     string `yaml:"value_env"`
}

// Policy is an access policy: every field of fmgate.policy.v1.Policy, its obligations
// flattened.
type Policy struct {
	Organization string `yaml:"organization"`
	ID           string `yaml:"id"`
	Description  string `yaml:"description"`
	// Effect is allow, deny or constrain.
	Effect   string   `yaml:"effect"`
	Subjects []string `yaml:"subjects"`
	Models   []string `yaml:"models"`
	// Condition is a CEL expression over principal, model, request and endpoints.
	Condition string `yaml:"condition"`

	ModerationProfile      string   `yaml:"moderation_profile"`
	MaxOutputTokens        int32    `yaml:"max_output_tokens"`
	AllowedEndpointRegions []string `yaml:"allowed_endpoint_regions"`
	AllowedModalities      []string `yaml:"allowed_modalities"`
	// LogRetention: unset sets no limit, 0s keeps nothing.
	LogRetention       *time.Duration `yaml:"log_retention"`
	LogGroup           string         `yaml:"log_group"`
	MaskPersonalData   bool           `yaml:"mask_personal_data"`
	RequireBAACoverage bool           `yaml:"require_baa_coverage"`
}

// LicenseAcceptance records that a team accepted a model's licence at one version.
type LicenseAcceptance struct {
	Organization   string `yaml:"organization"`
	Team           string `yaml:"team"`
	Model          string `yaml:"model"`
	LicenseName    string `yaml:"license_name"`
	LicenseVersion string `yaml:"license_version"`
}

// Limit is a rate limit.
type Limit struct {
	Name         string        `yaml:"name"`
	Organization string        `yaml:"organization"`
	Team         string        `yaml:"team"`
	Subject      string        `yaml:"subject"`
	APIKey       string        `yaml:"api_key"`
	Model        string        `yaml:"model"`
	Scope        string        `yaml:"scope"`
	PerModel     bool          `yaml:"per_model"`
	Kind         string        `yaml:"kind"`
	Amount       int64         `yaml:"amount"`
	Window       time.Duration `yaml:"window"`
}

// Fields are the keys one entry of a file spells out, itself or through a merge key or an
// alias: "display_name", and for nested blocks both the block ("license") and each key in
// it ("license.url").
type Fields map[string]bool

// Has reports whether the entry declares key. A nil Fields (an entry not read from a
// document, such as Demo's) declares every key.
func (f Fields) Has(key string) bool { return f == nil || f[key] }

// Declared returns the keys entry i of section ("models", "policies", ...) spells out, or
// nil (every key) for an entry the file was not parsed with.
func (f *File) Declared(section string, i int) Fields {
	if i < len(f.declared[section]) {
		return f.declared[section][i]
	}
	return nil
}

// Load reads and checks a resource file. Unknown fields are errors, so a typo cannot
// silently drop a setting.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read resources: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("resources %s: %w", path, err)
	}
	return f, nil
}

// Parse decodes and checks a resource document.
func Parse(data []byte) (*File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	// Decoded again as plain maps, so that the keys an entry takes from a merge key ("<<:
	// *base") or an alias ("- *base") count as declared, as they did for f.
	var doc map[string][]map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	f.declared = declaredKeys(doc)
	return &f, f.Validate()
}

// declaredKeys returns, for each section of the document, the keys of each entry, and of
// each block of keys in it.
func declaredKeys(doc map[string][]map[string]any) map[string][]Fields {
	out := map[string][]Fields{}
	for section, entries := range doc {
		for _, entry := range entries {
			fields := Fields{}
			for key, val := range entry {
				fields[key] = true
				if block, ok := val.(map[string]any); ok {
					for sub := range block {
						fields[key+"."+sub] = true
					}
				}
			}
			out[section] = append(out[section], fields)
		}
	}
	return out
}

// Values the file's enumerations take.
var (
	lifecycles  = []string{"proposed", "evaluating", "approved", "deprecated", "retired"}
	providers   = []string{"openai", "openai_compatible", "azure_openai", "anthropic", "bedrock", "gemini"}
	modalities  = []string{"text", "image", "audio", "video", "embedding"}
	effects     = []string{"allow", "deny", "constrain"}
	roleScopes  = []string{"organization", "team"}
	keyKinds    = []string{"user", "service_account"}
	operations  = []string{"generate", "embed", "list_models"}
	limitScopes = []string{"organization", "team", "subject", "api_key"}
	limitKinds  = []string{"requests", "tokens"}
)

// problems collects what is wrong with a file, each naming the entry and the field.
type problems struct {
	errs []error
	seen map[string]bool
}

// entry names entry i of section, with its identity when it has one: `models[2] (acme/gpt)`.
func entry(section string, i int, ids ...string) string {
	name := fmt.Sprintf("%s[%d]", section, i)
	ids = slices.DeleteFunc(ids, func(s string) bool { return s == "" })
	if len(ids) > 0 {
		name += " (" + strings.Join(ids, "/") + ")"
	}
	return name
}

func (p *problems) add(entry, field, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s: %s", entry, field, fmt.Sprintf(format, args...)))
}

func (p *problems) required(entry string, fields ...[2]string) {
	for _, f := range fields {
		if f[1] == "" {
			p.add(entry, f[0], "is required")
		}
	}
}

func (p *problems) oneOf(entry, field, value string, allowed []string) {
	if value != "" && !slices.Contains(allowed, value) {
		p.add(entry, field, "%q is not one of %s", value, strings.Join(allowed, ", "))
	}
}

func (p *problems) eachOneOf(entry, field string, values, allowed []string) {
	for i, v := range values {
		p.oneOf(entry, fmt.Sprintf("%s[%d]", field, i), v, allowed)
	}
}

func (p *problems) unique(entry, kind string, key ...string) {
	k := kind + "\x00" + strings.Join(key, "\x00")
	if p.seen[k] {
		p.errs = append(p.errs, fmt.Errorf("%s: %s %q appears twice", entry, kind, strings.Join(key, "/")))
	}
	p.seen[k] = true
}

// Validate checks what the file itself can tell: required fields, the values of
// enumerations and duplicates, each problem naming its entry and field. The services
// validate the rest of the values they own when they seed or apply them.
func (f *File) Validate() error {
	p := &problems{seen: map[string]bool{}}
	for i, o := range f.Organizations {
		e := entry("organizations", i, o.ID)
		p.required(e, [2]string{"id", o.ID})
		p.unique(e, "organization", o.ID)
	}
	for i, r := range f.Roles {
		e := entry("roles", i, r.Organization, r.ID)
		p.required(e, [2]string{"organization", r.Organization}, [2]string{"id", r.ID}, [2]string{"scope", r.Scope})
		p.oneOf(e, "scope", r.Scope, roleScopes)
		if len(r.Permissions) == 0 {
			p.add(e, "permissions", "must name at least one permission")
		}
		p.unique(e, "role", r.Organization, r.ID)
	}
	for i, t := range f.Teams {
		e := entry("teams", i, t.Organization, t.ID)
		p.required(e, [2]string{"organization", t.Organization}, [2]string{"id", t.ID})
		p.unique(e, "team", t.Organization, t.ID)
	}
	for i, u := range f.Users {
		e := entry("users", i, u.Organization, u.ID)
		p.required(e, [2]string{"organization", u.Organization}, [2]string{"id", u.ID})
		p.unique(e, "user", u.Organization, u.ID)
	}
	for i, s := range f.ServiceAccounts {
		e := entry("service_accounts", i, s.Organization, s.ID)
		p.required(e, [2]string{"organization", s.Organization}, [2]string{"id", s.ID})
		p.unique(e, "service account", s.Organization, s.ID)
	}
	for i, m := range f.Models {
		e := entry("models", i, m.Organization, m.Name)
		p.required(e, [2]string{"organization", m.Organization}, [2]string{"name", m.Name})
		p.oneOf(e, "lifecycle", m.Lifecycle, lifecycles)
		p.eachOneOf(e, "input_modalities", m.InputModalities, modalities)
		p.eachOneOf(e, "output_modalities", m.OutputModalities, modalities)
		if d := m.DataHandling.RetentionDays; d != nil && *d < 0 {
			p.add(e, "data_handling.retention_days", "must not be negative")
		}
		p.unique(e, "model", m.Organization, m.Name)
	}
	for i, ep := range f.Endpoints {
		e := entry("endpoints", i, ep.Organization, ep.ID)
		p.required(e, [2]string{"organization", ep.Organization}, [2]string{"id", ep.ID})
		p.oneOf(e, "provider", ep.Provider, providers)
		p.unique(e, "endpoint", ep.Organization, ep.ID)
	}
	for i, k := range f.APIKeys {
		validateKey(p, i, k)
	}
	for i, pol := range f.Policies {
		e := entry("policies", i, pol.Organization, pol.ID)
		p.required(e, [2]string{"organization", pol.Organization}, [2]string{"id", pol.ID}, [2]string{"effect", pol.Effect})
		p.oneOf(e, "effect", pol.Effect, effects)
		if pol.LogRetention != nil && *pol.LogRetention < 0 {
			p.add(e, "log_retention", "must not be negative")
		}
		p.unique(e, "policy", pol.Organization, pol.ID)
	}
	for i, a := range f.LicenseAcceptances {
		e := entry("license_acceptances", i, a.Organization, a.Team, a.Model)
		p.required(e, [2]string{"organization", a.Organization}, [2]string{"team", a.Team}, [2]string{"model", a.Model},
			[2]string{"license_name", a.LicenseName}, [2]string{"license_version", a.LicenseVersion})
		p.unique(e, "license acceptance", a.Organization, a.Team, a.Model, a.LicenseName+"@"+a.LicenseVersion)
	}
	for i, c := range f.Credentials {
		e := entry("credentials", i, c.Organization, c.Name)
		p.required(e, [2]string{"organization", c.Organization}, [2]string{"name", c.Name}, [2]string{"value_env", c.ValueEnv})
		p.unique(e, "credential", c.Organization, c.Name)
	}
	for i, l := range f.Limits {
		e := entry("limits", i, l.Name)
		p.required(e, [2]string{"name", l.Name})
		p.oneOf(e, "scope", l.Scope, limitScopes)
		p.oneOf(e, "kind", l.Kind, limitKinds)
		p.unique(e, "limit", l.Name)
	}
	return errors.Join(p.errs...)
}

func validateKey(p *problems, i int, k APIKey) {
	e := entry("api_keys", i, k.Organization, k.ID)
	p.required(e, [2]string{"organization", k.Organization}, [2]string{"id", k.ID})
	p.oneOf(e, "kind", k.Kind, keyKinds)
	p.eachOneOf(e, "scopes.operations", k.Scopes.Operations, operations)
	if k.SecretEnv != "" && k.SHA256 != "" {
		p.add(e, "secret_env", "give secret_env or sha256, not both")
	}
	if k.SHA256 != "" {
		if b, err := hex.DecodeString(k.SHA256); err != nil || len(b) != 32 {
			p.add(e, "sha256", "want 64 hex digits")
		}
	}
	if k.Generated() {
		// The server generates the secret for a stored owner, whose team, roles and
		// attributes the key acts with.
		p.required(e, [2]string{"kind", k.Kind}, [2]string{"subject", k.Subject})
		if pre, ok := subjectPrefix[k.Kind]; ok && k.Subject != "" && (!strings.HasPrefix(k.Subject, pre) || k.OwnerID() == "") {
			p.add(e, "subject", "a %s key's subject is %q followed by its id", k.Kind, pre)
		}
		for _, f := range []struct {
			name string
			set  bool
		}{{"team", k.Team != ""}, {"roles", len(k.Roles) > 0}, {"attributes", len(k.Attributes) > 0}} {
			if f.set {
				p.add(e, f.name, "a key without secret_env or sha256 acts with its owner's %s; set it on the owner", f.name)
			}
		}
	}
	p.unique(e, "api key", k.Organization, k.ID)
}

// DemoOrganization is the organisation of the embedded demo.
const DemoOrganization = "demo"

// Demo returns the resources of the embedded default: one organisation whose key is read
// from keyEnv, a "demo" model served by the simulator at simulatorURL, a policy granting it
// to the organisation with the default moderation profile, and a request-rate limit.
func Demo(simulatorURL, keyEnv string) *File {
	return &File{
		Models: []Model{{
			Organization: DemoOrganization, Name: "demo", DisplayName: "Demo model (simulated)",
			Vendor: "fmgate-simulator", Lifecycle: "approved", ContextWindow: 8192,
			InputPricePerMillion: 0.5, OutputPricePerMillion: 1.5, Endpoints: []string{"simulator"},
		}},
		Endpoints: []Endpoint{{
			Organization: DemoOrganization, ID: "simulator", Provider: "openai_compatible",
			BaseURL: simulatorURL, UpstreamModel: "demo", Region: "local",
		}},
		APIKeys: []APIKey{{
			Organization: DemoOrganization, ID: "demo", DisplayName: "Demo key", Subject: "user:demo",
			Kind: "user", Team: "demo-team", Roles: []string{"developer"}, SecretEnv: keyEnv,
		}},
		Policies: []Policy{{
			Organization: DemoOrganization, ID: "demo-allow", Description: "The demo organisation may use the demo model",
			Effect: "allow", Subjects: []string{"*"}, Models: []string{"demo"}, ModerationProfile: "default",
		}},
		Limits: []Limit{{
			Name: "demo-requests-per-minute", Organization: DemoOrganization, Scope: "api_key",
			Kind: "requests", Amount: 6000, Window: time.Minute,
		}},
	}
}
