package registry

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/fmgate/fmgate/internal/apierr"
)

// setter copies one field from src to dst.
type setter[T any] func(dst *T, src T)

// modelPaths are the update_mask paths of Model that UpdateModel changes. organization_id
// and name identify the model, etag is computed, and lifecycle_state changes only through
// TransitionModel, so that every state change is recorded.
var modelPaths = map[string]setter[Model]{
	"display_name":             func(d *Model, s Model) { d.DisplayName = s.DisplayName },
	"vendor":                   func(d *Model, s Model) { d.Vendor = s.Vendor },
	"context_window":           func(d *Model, s Model) { d.ContextWindow = s.ContextWindow },
	"input_price_per_million":  func(d *Model, s Model) { d.InputPricePerMillion = s.InputPricePerMillion },
	"output_price_per_million": func(d *Model, s Model) { d.OutputPricePerMillion = s.OutputPricePerMillion },
	"endpoint_ids":             func(d *Model, s Model) { d.EndpointIDs = s.EndpointIDs },
	"fallback_models":          func(d *Model, s Model) { d.FallbackModels = s.FallbackModels },
	"family":                   func(d *Model, s Model) { d.Card.Family = s.Card.Family },
	"version":                  func(d *Model, s Model) { d.Card.Version = s.Card.Version },
	"input_modalities":         func(d *Model, s Model) { d.Card.InputModalities = s.Card.InputModalities },
	"output_modalities":        func(d *Model, s Model) { d.Card.OutputModalities = s.Card.OutputModalities },
	"max_output_tokens":        func(d *Model, s Model) { d.Card.MaxOutputTokens = s.Card.MaxOutputTokens },
	"capabilities":             func(d *Model, s Model) { d.Card.Capabilities = s.Card.Capabilities },
	"capabilities.tools":       func(d *Model, s Model) { d.Card.Capabilities.Tools = s.Card.Capabilities.Tools },
	"capabilities.vision":      func(d *Model, s Model) { d.Card.Capabilities.Vision = s.Card.Capabilities.Vision },
	"capabilities.json_output": func(d *Model, s Model) { d.Card.Capabilities.JSONOutput = s.Card.Capabilities.JSONOutput },
	"price_per_image":          func(d *Model, s Model) { d.Card.PricePerImage = s.Card.PricePerImage },
	"regions":                  func(d *Model, s Model) { d.Card.Regions = s.Card.Regions },
	"intended_uses":            func(d *Model, s Model) { d.Card.IntendedUses = s.Card.IntendedUses },
	"use_case_tags":            func(d *Model, s Model) { d.Card.UseCaseTags = s.Card.UseCaseTags },
	"limitations":              func(d *Model, s Model) { d.Card.Limitations = s.Card.Limitations },
	"evaluation_metrics":       func(d *Model, s Model) { d.Card.EvaluationMetrics = s.Card.EvaluationMetrics },
	"license":                  func(d *Model, s Model) { d.Card.License = s.Card.License },
	"license.name":             func(d *Model, s Model) { d.Card.License.Name = s.Card.License.Name },
	"license.url":              func(d *Model, s Model) { d.Card.License.URL = s.Card.License.URL },
	"license.version":          func(d *Model, s Model) { d.Card.License.Version = s.Card.License.Version },
	"license.acceptance_required": func(d *Model, s Model) {
		d.Card.License.AcceptanceRequired = s.Card.License.AcceptanceRequired
	},
	"data_handling": func(d *Model, s Model) { d.Card.DataHandling = s.Card.DataHandling },
	"data_handling.retention_days": func(d *Model, s Model) {
		d.Card.DataHandling.RetentionDays = s.Card.DataHandling.RetentionDays
	},
	"data_handling.used_for_training": func(d *Model, s Model) {
		d.Card.DataHandling.UsedForTraining = s.Card.DataHandling.UsedForTraining
	},
	"successor_model": func(d *Model, s Model) { d.Card.SuccessorModel = s.Card.SuccessorModel },
	"vendor_model_id": func(d *Model, s Model) { d.Card.VendorModelID = s.Card.VendorModelID },
}

// endpointPaths are the update_mask paths of Endpoint that UpdateEndpoint changes.
var endpointPaths = map[string]setter[Endpoint]{
	"provider":       func(d *Endpoint, s Endpoint) { d.Provider = s.Provider },
	"base_url":       func(d *Endpoint, s Endpoint) { d.BaseURL = s.BaseURL },
	"upstream_model": func(d *Endpoint, s Endpoint) { d.UpstreamModel = s.UpstreamModel },
	"credential_ref": func(d *Endpoint, s Endpoint) { d.CredentialRef = s.CredentialRef },
	"region":         func(d *Endpoint, s Endpoint) { d.Region = s.Region },
	"weight":         func(d *Endpoint, s Endpoint) { d.Weight = s.Weight },
	"priority":       func(d *Endpoint, s Endpoint) { d.Priority = s.Priority },
	"api_version":    func(d *Endpoint, s Endpoint) { d.APIVersion = s.APIVersion },
	"covered_by_baa": func(d *Endpoint, s Endpoint) { d.CoveredByBAA = s.CoveredByBAA },
}

// maskSetters returns the setters of paths, or every top-level one for an empty mask or "*"
// (AIP-134: a full replacement). fixed explains, by path, why a path cannot be updated.
func maskSetters[T any](paths []string, table map[string]setter[T], fixed map[string]string) ([]setter[T], []apierr.FieldViolation) {
	if len(paths) == 0 || (len(paths) == 1 && paths[0] == "*") {
		var out []setter[T]
		for _, p := range slices.Sorted(maps.Keys(table)) {
			if !strings.Contains(p, ".") {
				out = append(out, table[p])
			}
		}
		return out, nil
	}
	var (
		out []setter[T]
		vs  []apierr.FieldViolation
	)
	for i, p := range paths {
		field := fmt.Sprintf("update_mask.paths[%d]", i)
		if why, ok := fixed[p]; ok {
			vs = append(vs, apierr.FieldViolation{Field: field, Description: fmt.Sprintf("%q %s", p, why)})
			continue
		}
		set, ok := table[p]
		if !ok {
			vs = append(vs, apierr.FieldViolation{Field: field, Description: fmt.Sprintf("%q is not a field that can be updated", p)})
			continue
		}
		out = append(out, set)
	}
	return out, vs
}

var modelFixedPaths = map[string]string{
	"organization_id": "cannot change",
	"name":            "cannot change; create a new model instead",
	"etag":            "is computed",
	"lifecycle_state": "changes only through TransitionModel, which records who and why",
}

var endpointFixedPaths = map[string]string{
	"organization_id": "cannot change",
	"id":              "cannot change; create a new endpoint instead",
	"etag":            "is computed",
}
