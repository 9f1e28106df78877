package edge

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
)

// embeddingsRequest is the body of POST /v1/embeddings.
type embeddingsRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	Dimensions     *int32          `json:"dimensions"`
	EncodingFormat string          `json:"encoding_format"`
	User           string          `json:"user"`
}

type embeddingList struct {
	Object string          `json:"object"`
	Data   []embeddingData `json:"data"`
	Model  string          `json:"model"`
	Usage  embeddingUsage  `json:"usage"`
}

type embeddingData struct {
	Object string `json:"object"`
	Index  int32  `json:"index"`
	// Embedding is []float32, or a base64 string of little-endian float32s.
	Embedding any `json:"embedding"`
}

type embeddingUsage struct {
	PromptTokens int64 `json:"prompt_tokens"`
	TotalTokens  int64 `json:"total_tokens"`
}

// parseEmbeddings decodes and translates an embeddings request. Inputs given as token
// arrays are refused: fmgate's contract carries text, and token ids belong to one vendor's
// tokenizer.
func parseEmbeddings(body []byte) (*gatewayv1.EmbedRequest, bool, error) {
	var req embeddingsRequest
	if err := decodeRequest(body, &req); err != nil {
		return nil, false, err
	}
	out := &gatewayv1.EmbedRequest{Model: req.Model, Dimensions: req.Dimensions, EndUserId: req.User}
	var one string
	if err := json.Unmarshal(req.Input, &one); err == nil {
		out.Inputs = []string{one}
	} else if err := json.Unmarshal(req.Input, &out.Inputs); err != nil || isJSONNull(req.Input) {
		return nil, false, badParam("input", "invalid_type", "input must be a string or an array of strings (token arrays are not supported)")
	}
	switch req.EncodingFormat {
	case "", "float":
		return out, false, nil
	case "base64":
		return out, true, nil
	}
	return nil, false, badParam("encoding_format", "unsupported_value", "encoding_format must be float or base64")
}

// embeddings serves POST /v1/embeddings.
func (h *openAI) embeddings(w http.ResponseWriter, r *http.Request) {
	body, err := readOpenAIBody(r)
	if err != nil {
		writeOpenAIError(w, err, noParamMap)
		return
	}
	req, b64, err := parseEmbeddings(body)
	if err != nil {
		writeOpenAIError(w, err, noParamMap)
		return
	}
	resp, err := h.gw.Embed(r.Context(), req)
	if err != nil {
		writeOpenAIError(w, err, func(f string) string { return openAIParam(f, "") })
		return
	}
	list := embeddingList{Object: "list", Model: req.GetModel(), Data: make([]embeddingData, 0, len(resp.GetEmbeddings())),
		Usage: embeddingUsage{PromptTokens: resp.GetUsage().GetInputTokens(), TotalTokens: resp.GetUsage().GetTotalTokens()}}
	for _, e := range resp.GetEmbeddings() {
		var vec any = e.GetValues()
		if b64 {
			vec = encodeFloats(e.GetValues())
		}
		if e.GetValues() == nil && !b64 {
			vec = []float32{}
		}
		list.Data = append(list.Data, embeddingData{Object: "embedding", Index: e.GetIndex(), Embedding: vec})
	}
	writeOpenAIJSON(w, http.StatusOK, list)
}

// encodeFloats is OpenAI's base64 encoding of a vector: little-endian float32s.
func encodeFloats(v []float32) string {
	buf := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(buf)
}
