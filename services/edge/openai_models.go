package edge

import (
	"net/http"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
)

// openAIModel is a model in OpenAI's shape. The registry records no creation time, so
// created is 0 (the Unix epoch) rather than an invented date.
type openAIModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type openAIModelList struct {
	Object string        `json:"object"`
	Data   []openAIModel `json:"data"`
}

// maxModelPages bounds how many pages of the gateway's model list one request reads.
const maxModelPages = 100

func toOpenAIModel(m *gatewayv1.Model) openAIModel {
	owner := m.GetVendor()
	if owner == "" {
		owner = "fmgate"
	}
	return openAIModel{ID: m.GetName(), Object: "model", OwnedBy: owner}
}

// listModels serves GET /v1/models: every model the caller may use (OpenAI's list is not
// paged, so this reads every page of the gateway's).
func (h *openAI) listModels(w http.ResponseWriter, r *http.Request) {
	list := openAIModelList{Object: "list", Data: []openAIModel{}}
	token := ""
	for range maxModelPages {
		page, err := h.gw.ListModels(r.Context(), &gatewayv1.ListModelsRequest{PageToken: token})
		if err != nil {
			writeOpenAIError(w, err, noParamMap)
			return
		}
		for _, m := range page.GetModels() {
			list.Data = append(list.Data, toOpenAIModel(m))
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	writeOpenAIJSON(w, http.StatusOK, list)
}

// getModel serves GET /v1/models/{id}.
func (h *openAI) getModel(w http.ResponseWriter, r *http.Request) {
	resp, err := h.gw.GetModel(r.Context(), &gatewayv1.GetModelRequest{Name: r.PathValue("id")})
	if err != nil {
		writeOpenAIError(w, err, func(string) string { return "model" })
		return
	}
	writeOpenAIJSON(w, http.StatusOK, toOpenAIModel(resp.GetModel()))
}
