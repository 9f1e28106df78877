// Package resources reads declarative resource files: the models, endpoints, API keys,
// policies, limits and vendor credentials an fmgate deployment starts with. Each service seeds the part it owns,
// idempotently, so applying the same file at every start changes nothing.
package resources

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"gopkg.in/yaml.v3"
)

// File is a resource file.
type File struct {
	Models    []Model    `yaml:"models"`
	Endpoints []Endpoint `yaml:"endpoints"`
	APIKeys   []APIKey   `yaml:"api_keys"`
	Policies  []Policy   `yaml:"policies"`
	Limits    []Limit    `yaml:"limits"`
	// Credentials are sealed into dispatch's credential store at start.
	Credentials []Credential `yaml:"credentials"`
}

// Model is a model of an organisation's catalogue.
type Model struct {
	Organization          string   `yaml:"organization"`
	Name                  string   `yaml:"name"`
	DisplayName           string   `yaml:"display_name"`
	Vendor                string   `yaml:"vendor"`
	Lifecycle             string   `yaml:"lifecycle"`
	ContextWindow         int32    `yaml:"context_window"`
	InputPricePerMillion  float64  `yaml:"input_price_per_million"`
	OutputPricePerMillion float64  `yaml:"output_price_per_million"`
	Endpoints             []string `yaml:"endpoints"`
	// FallbackModels are models whose endpoints are tried, in order, after this model's.
	FallbackModels []string `yaml:"fallback_models"`
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

// APIKey is an API key. The secret itself is never in the file: either SecretEnv names the
// environment variable holding it, or SHA256 is the hex SHA-256 of it.
type APIKey struct {
	Organization string            `yaml:"organization"`
	ID           string            `yaml:"id"`
	DisplayName  string            `yaml:"display_name"`
	Subject      string            `yaml:"subject"`
	Kind         string            `yaml:"kind"`
	Team         string            `yaml:"team"`
	Roles        []string          `yaml:"roles"`
	Attributes   map[string]string `yaml:"attributes"`
	SecretEnv    string            `yaml:"secret_env"`
	SHA256       string            `yaml:"sha256"`
	ExpireTime   time.Time         `yaml:"expire_time"`
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

// Policy is an access policy.
type Policy struct {
	Organization      string   `yaml:"organization"`
	ID                string   `yaml:"id"`
	Description       string   `yaml:"description"`
	Effect            string   `yaml:"effect"`
	Subjects          []string `yaml:"subjects"`
	Models            []string `yaml:"models"`
	ModerationProfile string   `yaml:"moderation_profile"`
	MaxOutputTokens   int32    `yaml:"max_output_tokens"`
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
	return &f, f.Validate()
}

// Validate checks what the file itself can tell: required names and duplicates. Each
// service validates the values it owns when it seeds them.
func (f *File) Validate() error {
	var errs []error
	seen := map[string]bool{}
	dup := func(kind, key string) {
		if seen[kind+"\x00"+key] {
			errs = append(errs, fmt.Errorf("%s %q appears twice", kind, key))
		}
		seen[kind+"\x00"+key] = true
	}
	for i, m := range f.Models {
		if m.Organization == "" || m.Name == "" {
			errs = append(errs, fmt.Errorf("models[%d]: organization and name are required", i))
		}
		dup("model", m.Organization+"/"+m.Name)
	}
	for i, e := range f.Endpoints {
		if e.Organization == "" || e.ID == "" {
			errs = append(errs, fmt.Errorf("endpoints[%d]: organization and id are required", i))
		}
		dup("endpoint", e.Organization+"/"+e.ID)
	}
	for i, k := range f.APIKeys {
		if k.Organization == "" || k.ID == "" {
			errs = append(errs, fmt.Errorf("api_keys[%d]: organization and id are required", i))
		}
		if (k.SecretEnv == "") == (k.SHA256 == "") {
			errs = append(errs, fmt.Errorf("api_keys[%d]: exactly one of secret_env and sha256 is required", i))
		}
		if k.SHA256 != "" {
			if b, err := hex.DecodeString(k.SHA256); err != nil || len(b) != 32 {
				errs = append(errs, fmt.Errorf("api_keys[%d].sha256: want 64 hex digits", i))
			}
		}
		dup("api key", k.Organization+"/"+k.ID)
	}
	for i, p := range f.Policies {
		if p.Organization == "" || p.ID == "" {
			errs = append(errs, fmt.Errorf("policies[%d]: organization and id are required", i))
		}
		dup("policy", p.Organization+"/"+p.ID)
	}
	for i, c := range f.Credentials {
		if c.Organization == "" || c.Name == "" || c.ValueEnv == "" {
			errs = append(errs, fmt.Errorf("credentials[%d]: organization, name and value_env are required", i))
		}
		dup("credential", c.Organization+"/"+c.Name)
	}
	for i, l := range f.Limits {
		if l.Name == "" {
			errs = append(errs, fmt.Errorf("limits[%d]: name is required", i))
		}
		dup("limit", l.Name)
	}
	return errors.Join(errs...)
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
