package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
)

// Modality is a kind of input or output a model handles.
type Modality string

// The modalities a model card can name.
const (
	ModalityText      Modality = "text"
	ModalityImage     Modality = "image"
	ModalityAudio     Modality = "audio"
	ModalityVideo     Modality = "video"
	ModalityEmbedding Modality = "embedding"
)

// Modalities lists every defined modality.
var Modalities = []Modality{ModalityText, ModalityImage, ModalityAudio, ModalityVideo, ModalityEmbedding}

// Valid reports whether m is one of the defined modalities.
func (m Modality) Valid() bool { return slices.Contains(Modalities, m) }

// Capabilities are the features a model supports.
type Capabilities struct {
	Tools      bool `json:"tools,omitempty"`
	Vision     bool `json:"vision,omitempty"`
	JSONOutput bool `json:"json_output,omitempty"`
}

// License is the licence or EULA a model is used under.
type License struct {
	Name    string `json:"name,omitempty"`
	URL     string `json:"url,omitempty"`
	Version string `json:"version,omitempty"`
	// AcceptanceRequired says a team must accept the licence before using the model.
	AcceptanceRequired bool `json:"acceptance_required,omitempty"`
}

// DataHandling is what the vendor does with the data sent to the model.
type DataHandling struct {
	// RetentionDays is how long the vendor keeps prompts and completions: nil when unknown,
	// 0 when it keeps nothing.
	RetentionDays   *int32 `json:"retention_days,omitempty"`
	UsedForTraining bool   `json:"used_for_training,omitempty"`
}

// ModelCard describes a model for the people who choose and govern it. Stores keep it as one
// document (JSON): its fields are read together and never queried alone, but for the
// use-case tags list filters use.
type ModelCard struct {
	Family            string             `json:"family,omitempty"`
	Version           string             `json:"version,omitempty"`
	InputModalities   []Modality         `json:"input_modalities,omitempty"`
	OutputModalities  []Modality         `json:"output_modalities,omitempty"`
	MaxOutputTokens   int32              `json:"max_output_tokens,omitempty"`
	Capabilities      Capabilities       `json:"capabilities,omitzero"`
	PricePerImage     float64            `json:"price_per_image,omitempty"` // US dollars
	Regions           []string           `json:"regions,omitempty"`
	IntendedUses      []string           `json:"intended_uses,omitempty"`
	UseCaseTags       []string           `json:"use_case_tags,omitempty"`
	Limitations       []string           `json:"limitations,omitempty"`
	EvaluationMetrics map[string]float64 `json:"evaluation_metrics,omitempty"`
	License           License            `json:"license,omitzero"`
	DataHandling      DataHandling       `json:"data_handling,omitzero"`
	// SuccessorModel names the model that replaces this one once it is deprecated.
	SuccessorModel string `json:"successor_model,omitempty"`
	// VendorModelID is the vendor's own identifier of the model (set by catalogue import).
	VendorModelID string `json:"vendor_model_id,omitempty"`
}

// Clone returns a copy of c that shares no memory with it. Empty lists and maps become nil,
// so that a card reads back the same whichever way a store keeps it.
func (c ModelCard) Clone() ModelCard {
	c.InputModalities = cloneList(c.InputModalities)
	c.OutputModalities = cloneList(c.OutputModalities)
	c.Regions = cloneList(c.Regions)
	c.IntendedUses = cloneList(c.IntendedUses)
	c.UseCaseTags = cloneList(c.UseCaseTags)
	c.Limitations = cloneList(c.Limitations)
	if len(c.EvaluationMetrics) == 0 {
		c.EvaluationMetrics = nil
	} else {
		c.EvaluationMetrics = maps.Clone(c.EvaluationMetrics)
	}
	if c.DataHandling.RetentionDays != nil {
		d := *c.DataHandling.RetentionDays
		c.DataHandling.RetentionDays = &d
	}
	return c
}

func cloneList[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

// Clone returns a copy of m that shares no memory with it, empty lists as nil.
func (m Model) Clone() Model {
	m.EndpointIDs = cloneList(m.EndpointIDs)
	m.FallbackModels = cloneList(m.FallbackModels)
	m.Card = m.Card.Clone()
	return m
}

// Etag identifies the content of m: equal models have equal etags, and any change of any
// field changes it. Both stores and every replica compute the same value, so an etag read
// from one replica is checked correctly by another.
func (m Model) Etag() string { return etagOf(m.Clone()) }

// Etag identifies the content of e, as Model.Etag.
func (e Endpoint) Etag() string { return etagOf(e) }

func etagOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only NaN or infinite prices fail, and validation refuses them before any store.
		panic(fmt.Sprintf("registry: etag of invalid record: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// Bounds of model card fields.
const (
	maxListItems = 64
	maxLongText  = 2048
)

var metricName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._/-]{0,63}$`)

func (c ModelCard) validate(vs *violations, self string) {
	if len(c.Family) > maxText {
		vs.add("family", "must be at most %d bytes", maxText)
	}
	if len(c.Version) > maxText {
		vs.add("version", "must be at most %d bytes", maxText)
	}
	checkModalities(vs, "input_modalities", c.InputModalities)
	checkModalities(vs, "output_modalities", c.OutputModalities)
	if c.MaxOutputTokens < 0 {
		vs.add("max_output_tokens", "must not be negative")
	}
	checkPrice(vs, "price_per_image", c.PricePerImage)
	if len(c.Regions) > maxListItems {
		vs.add("regions", "must name at most %d regions", maxListItems)
	}
	for i, r := range c.Regions {
		if !identifier.MatchString(r) {
			vs.add(fmt.Sprintf("regions[%d]", i), "must match %s", identifier)
		}
	}
	checkTexts(vs, "intended_uses", c.IntendedUses, maxLongText)
	checkTexts(vs, "use_case_tags", c.UseCaseTags, maxText)
	checkTexts(vs, "limitations", c.Limitations, maxLongText)
	if len(c.EvaluationMetrics) > maxListItems {
		vs.add("evaluation_metrics", "must hold at most %d metrics", maxListItems)
	}
	for _, name := range slices.Sorted(maps.Keys(c.EvaluationMetrics)) {
		v := c.EvaluationMetrics[name]
		switch {
		case !metricName.MatchString(name):
			vs.add("evaluation_metrics["+name+"]", "metric names must match %s", metricName)
		case math.IsNaN(v) || math.IsInf(v, 0):
			vs.add("evaluation_metrics["+name+"]", "must be a finite number")
		}
	}
	if len(c.License.Name) > maxText {
		vs.add("license.name", "must be at most %d bytes", maxText)
	}
	if c.License.URL != "" {
		if msg := checkHTTPURL(c.License.URL); msg != "" {
			vs.add("license.url", "%s", msg)
		}
	}
	if len(c.License.Version) > maxText {
		vs.add("license.version", "must be at most %d bytes", maxText)
	}
	if c.License.AcceptanceRequired && c.License.Name == "" {
		vs.add("license.name", "is required when acceptance is required")
	}
	if d := c.DataHandling.RetentionDays; d != nil && *d < 0 {
		vs.add("data_handling.retention_days", "must not be negative")
	}
	switch {
	case c.SuccessorModel == "":
	case !modelName.MatchString(c.SuccessorModel):
		vs.add("successor_model", "must match %s", modelName)
	case c.SuccessorModel == self:
		vs.add("successor_model", "must not name the model itself")
	}
	if len(c.VendorModelID) > maxText {
		vs.add("vendor_model_id", "must be at most %d bytes", maxText)
	}
}

func checkModalities(vs *violations, field string, ms []Modality) {
	seen := map[Modality]bool{}
	for i, m := range ms {
		switch {
		case !m.Valid():
			vs.add(fmt.Sprintf("%s[%d]", field, i), "must be one of text, image, audio, video, embedding; got %q", m)
		case seen[m]:
			vs.add(fmt.Sprintf("%s[%d]", field, i), "repeats %q", m)
		}
		seen[m] = true
	}
}

func checkTexts(vs *violations, field string, texts []string, maxLen int) {
	if len(texts) > maxListItems {
		vs.add(field, "must hold at most %d items", maxListItems)
	}
	for i, t := range texts {
		switch {
		case t == "":
			vs.add(fmt.Sprintf("%s[%d]", field, i), "must not be empty")
		case len(t) > maxLen:
			vs.add(fmt.Sprintf("%s[%d]", field, i), "must be at most %d bytes", maxLen)
		}
	}
}
