package registry

import (
	"encoding/base64"
	"fmt"
	"math"
	"net/url"
	"path"
	"regexp"
	"strings"
)

// Violation is one invalid field of a record.
type Violation struct {
	Field       string // the field's proto name, such as "base_url"
	Description string
}

// ValidationError lists every problem of an invalid record at once.
type ValidationError struct {
	Violations []Violation
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return "invalid: " + strings.Join(parts, "; ")
}

type violations []Violation

func (vs *violations) add(field, format string, args ...any) {
	*vs = append(*vs, Violation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (vs violations) err() error {
	if len(vs) == 0 {
		return nil
	}
	return &ValidationError{Violations: vs}
}

var (
	// Model names may carry a vendor prefix and version ("meta/llama-3.1:8b").
	modelName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._:/-]{0,127}$`)
	// Organization and endpoint ids, regions.
	identifier = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$`)
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

const maxText = 256

func checkOrganization(vs *violations, id string) {
	if id == "" {
		vs.add("organization_id", "is required")
	} else if !identifier.MatchString(id) {
		vs.add("organization_id", "must match %s", identifier)
	}
}

// Validate reports every problem of m as a *ValidationError, or nil.
func (m Model) Validate() error {
	var vs violations
	checkOrganization(&vs, m.OrganizationID)
	if m.Name == "" {
		vs.add("name", "is required")
	} else if !modelName.MatchString(m.Name) {
		vs.add("name", "must match %s", modelName)
	}
	if len(m.DisplayName) > maxText {
		vs.add("display_name", "must be at most %d bytes", maxText)
	}
	if len(m.Vendor) > maxText {
		vs.add("vendor", "must be at most %d bytes", maxText)
	}
	if !m.LifecycleState.Valid() {
		vs.add("lifecycle_state", "must be one of proposed, evaluating, approved, deprecated, retired; got %q", m.LifecycleState)
	}
	if m.ContextWindow < 0 {
		vs.add("context_window", "must not be negative")
	}
	checkPrice(&vs, "input_price_per_million", m.InputPricePerMillion)
	checkPrice(&vs, "output_price_per_million", m.OutputPricePerMillion)
	seen := make(map[string]bool, len(m.EndpointIDs))
	for i, id := range m.EndpointIDs {
		field := fmt.Sprintf("endpoint_ids[%d]", i)
		switch {
		case !identifier.MatchString(id):
			vs.add(field, "must match %s", identifier)
		case seen[id]:
			vs.add(field, "repeats endpoint %q", id)
		}
		seen[id] = true
	}
	if len(m.FallbackModels) > MaxFallbackModels {
		vs.add("fallback_models", "must name at most %d models", MaxFallbackModels)
	}
	seenModels := make(map[string]bool, len(m.FallbackModels))
	for i, name := range m.FallbackModels {
		field := fmt.Sprintf("fallback_models[%d]", i)
		switch {
		case !modelName.MatchString(name):
			vs.add(field, "must match %s", modelName)
		case name == m.Name:
			vs.add(field, "must not name the model itself")
		case seenModels[name]:
			vs.add(field, "repeats model %q", name)
		}
		seenModels[name] = true
	}
	m.Card.validate(&vs, m.Name)
	if m.Card.MaxOutputTokens > 0 && m.ContextWindow > 0 && m.Card.MaxOutputTokens > m.ContextWindow {
		vs.add("max_output_tokens", "must not exceed context_window")
	}
	return vs.err()
}

func checkPrice(vs *violations, field string, p float64) {
	if math.IsNaN(p) || math.IsInf(p, 0) || p < 0 {
		vs.add(field, "must be a non-negative number")
	}
}

// Validate reports every problem of e as a *ValidationError, or nil.
func (e Endpoint) Validate() error {
	var vs violations
	checkOrganization(&vs, e.OrganizationID)
	if e.ID == "" {
		vs.add("id", "is required")
	} else if !identifier.MatchString(e.ID) {
		vs.add("id", "must match %s", identifier)
	}
	if !e.Provider.Valid() {
		names := make([]string, len(Providers))
		for i, p := range Providers {
			names[i] = string(p)
		}
		vs.add("provider", "must be one of %s; got %q", strings.Join(names, ", "), e.Provider)
	}
	if msg := checkBaseURL(e.BaseURL); msg != "" {
		vs.add("base_url", "%s", msg)
	}
	if e.UpstreamModel == "" {
		vs.add("upstream_model", "is required")
	} else if len(e.UpstreamModel) > maxText {
		vs.add("upstream_model", "must be at most %d bytes", maxText)
	}
	if msg := checkCredentialRef(e.CredentialRef); msg != "" {
		vs.add("credential_ref", "%s", msg)
	}
	switch {
	case e.Region == "" && e.Provider == ProviderBedrock:
		vs.add("region", "is required for bedrock")
	case e.Region != "" && !identifier.MatchString(e.Region):
		vs.add("region", "must match %s", identifier)
	}
	if e.Weight < 0 || e.Weight > MaxWeight {
		vs.add("weight", "must be between 0 and %d", MaxWeight)
	}
	if e.Priority < 0 || e.Priority > MaxPriority {
		vs.add("priority", "must be between 0 and %d", MaxPriority)
	}
	switch {
	case e.APIVersion == "" && e.Provider == ProviderAzureOpenAI:
		vs.add("api_version", "is required for azure_openai")
	case e.APIVersion != "" && !identifier.MatchString(e.APIVersion):
		// It ends up in a query string or header: no room for anything but a version.
		vs.add("api_version", "must match %s", identifier)
	}
	return vs.err()
}

func checkBaseURL(raw string) string {
	if raw == "" {
		return "is required"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "is not a URL"
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an absolute http or https URL"
	case u.Host == "" || u.Hostname() == "":
		return "must name a host"
	case u.User != nil:
		// A password here would end up in logs and errors: it belongs in credential_ref.
		return "must not carry user information; use credential_ref"
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return "must not have a query or fragment"
	}
	return ""
}

func checkHTTPURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "is not a URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an absolute http or https URL"
	case u.Hostname() == "":
		return "must name a host"
	case u.User != nil:
		return "must not carry user information"
	}
	return ""
}

func checkCredentialRef(ref string) string {
	switch {
	case ref == "":
		return ""
	case strings.HasPrefix(ref, "env:"):
		if !envName.MatchString(strings.TrimPrefix(ref, "env:")) {
			return `must be "env:NAME" with NAME an environment variable name`
		}
		return ""
	case strings.HasPrefix(ref, "file:"):
		p := strings.TrimPrefix(ref, "file:")
		if !path.IsAbs(p) || path.Clean(p) != p || strings.ContainsRune(p, 0) {
			return `must be "file:/absolute/clean/path"`
		}
		return ""
	case strings.HasPrefix(ref, "store:"):
		if !storeName.MatchString(strings.TrimPrefix(ref, "store:")) {
			return `must be "store:NAME" with NAME 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit`
		}
		return ""
	}
	return `must be empty, "env:NAME", "file:/path" or "store:NAME"`
}

const pageTokenPrefix = "r1:"

// EncodePageToken returns the opaque token of the page that starts after key. Stores share
// it so that tokens mean the same thing whichever store issued them.
func EncodePageToken(key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + key))
}

// DecodePageToken returns the key a token from EncodePageToken starts after; "" for "".
func DecodePageToken(token string) (string, error) {
	if token == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || !strings.HasPrefix(string(b), pageTokenPrefix) || len(b) == len(pageTokenPrefix) {
		return "", ErrInvalidPageToken
	}
	return string(b[len(pageTokenPrefix):]), nil
}

// storeName is the name in a "store:NAME" credential reference: a credential of the
// endpoint's organisation in dispatch's credential store (dispatch.ValidateCredentialName).
var storeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
