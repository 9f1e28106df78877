package simulator

// The Azure OpenAI dialect: OpenAI's chat completion and embedding bodies under
// /openai/deployments/{deployment}/..., authenticated by the api-key header, with the
// api-version query parameter required. The deployment name stands for the model: it keys
// faults and appears in answers.

import "net/http"

func (s *Simulator) registerAzure(mux *http.ServeMux) {
	mux.HandleFunc("POST /openai/deployments/{deployment}/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		if s.azureAccepted(w, r) {
			s.chat(w, r, r.PathValue("deployment"))
		}
	})
	mux.HandleFunc("POST /openai/deployments/{deployment}/embeddings", func(w http.ResponseWriter, r *http.Request) {
		if s.azureAccepted(w, r) {
			s.embeddings(w, r, r.PathValue("deployment"))
		}
	})
}

// azurePromptFilter is Azure's report of the content filtering of one prompt.
type azurePromptFilter struct {
	PromptIndex          int                       `json:"prompt_index"`
	ContentFilterResults map[string]azureFilterHit `json:"content_filter_results"`
}

type azureFilterHit struct {
	Filtered bool   `json:"filtered"`
	Severity string `json:"severity"`
}

// azureNoFilter is the report of a prompt that no filter caught.
var azureNoFilter = []azurePromptFilter{{ContentFilterResults: map[string]azureFilterHit{
	"hate": {Severity: "safe"}, "self_harm": {Severity: "safe"}, "sexual": {Severity: "safe"}, "violence": {Severity: "safe"},
}}}

// azureError is Azure's own error shape, used where the request never reaches the model.
type azureError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// azureAccepted checks the api-key and the api-version, answering the error itself when one
// is wrong.
func (s *Simulator) azureAccepted(w http.ResponseWriter, r *http.Request) bool {
	fail := func(status int, code, msg string) bool {
		var e azureError
		e.Error.Code, e.Error.Message = code, msg
		writeJSON(w, status, e)
		return false
	}
	if s.cfg.APIKey != "" && r.Header.Get("api-key") != s.cfg.APIKey {
		// The presented key is never echoed.
		return fail(http.StatusUnauthorized, "401",
			"Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.")
	}
	if r.URL.Query().Get("api-version") == "" {
		return fail(http.StatusBadRequest, "MissingApiVersionParameter",
			"The api-version query parameter (?api-version=) is required for all requests.")
	}
	return true
}
