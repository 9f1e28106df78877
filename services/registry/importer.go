package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrock"
	bedrocktypes "github.com/aws/aws-sdk-go-v2/service/bedrock/types"
	"google.golang.org/grpc/codes"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/apierr"
	"github.com/fmgate/fmgate/internal/credref"
)

// Vendor catalogue import. The registry calls the vendor itself (dispatch serves
// generations, not catalogues), so it resolves the endpoint's credential reference with its
// own small resolver: the same "env:NAME" / "file:/path" forms dispatch reads, from the
// registry process's environment and files. A secret lives only in the outgoing request; it
// never reaches a log, an error or a response.

// CredentialResolver turns a credential reference into the secret.
type CredentialResolver interface {
	Resolve(ctx context.Context, ref string) (string, error)
}

// ErrCredentialUnavailable is matched by every failure to resolve a credential reference.
var ErrCredentialUnavailable = credref.ErrUnavailable

// EnvFileCredentials resolves "env:NAME" and "file:/path" references as dispatch does
// (internal/credref); "" resolves to "" (no credential).
type EnvFileCredentials struct{}

// Resolve implements CredentialResolver. Errors name the reference, never the secret.
func (EnvFileCredentials) Resolve(_ context.Context, ref string) (string, error) {
	v, err := credref.Resolve(ref)
	if errors.Is(err, credref.ErrUnsupported) {
		return "", fmt.Errorf("%w: unsupported reference (want env:NAME or file:/path)", ErrCredentialUnavailable)
	}
	return v, err // credref's errors wrap ErrCredentialUnavailable and name the reference
}

// VendorModel is one entry of a vendor's catalogue.
type VendorModel struct {
	ID               string // the vendor's model id
	DisplayName      string
	Vendor           string
	InputModalities  []Modality
	OutputModalities []Modality
}

// Reasons of import errors.
const (
	ReasonImportUnsupported = "IMPORT_UNSUPPORTED"
	ReasonVendorUnavailable = "VENDOR_UNAVAILABLE"
	ReasonCredential        = "CREDENTIAL_UNAVAILABLE"
)

// maxCatalogue bounds a vendor's answer.
const maxCatalogue = 8 << 20

// ImportVendorModels lists the endpoint's vendor catalogue and creates each model the
// organization does not have, PROPOSED, with the vendor's id, name and modalities. Imported
// models name no endpoint: an admin wires them to endpoints while evaluating them.
func (s *Server) ImportVendorModels(ctx context.Context, req *registryv1.ImportVendorModelsRequest) (*registryv1.ImportVendorModelsResponse, error) {
	if vs := required("organization_id", req.GetOrganizationId(), "endpoint_id", req.GetEndpointId()); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	org := req.GetOrganizationId()
	ep, err := s.store.GetEndpoint(ctx, org, req.GetEndpointId())
	if err != nil {
		return nil, toStatus(err)
	}
	secret, err := s.cfg.Credentials.Resolve(ctx, ep.CredentialRef)
	if err != nil {
		s.log.WarnContext(ctx, "import: credential unavailable", "organization_id", org, "endpoint_id", ep.ID, "error", err)
		return nil, apierr.WithReason(codes.FailedPrecondition, ReasonCredential,
			fmt.Sprintf("the credential of endpoint %q is not available to the registry", ep.ID))
	}
	var models []VendorModel
	switch ep.Provider {
	case ProviderOpenAI, ProviderOpenAICompatible:
		models, err = listOpenAIModels(ctx, s.cfg.HTTPClient, ep, secret)
	case ProviderBedrock:
		models, err = listBedrockModels(ctx, s.cfg.HTTPClient, ep, secret)
	default:
		return nil, apierr.WithReason(codes.FailedPrecondition, ReasonImportUnsupported,
			fmt.Sprintf("catalogue import is not supported for %s endpoints", ep.Provider))
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, toStatus(ctx.Err())
		}
		s.log.WarnContext(ctx, "import: vendor catalogue unavailable", "organization_id", org, "endpoint_id", ep.ID, "error", err)
		return nil, apierr.WithReason(codes.Unavailable, ReasonVendorUnavailable,
			fmt.Sprintf("the vendor catalogue of endpoint %q could not be listed", ep.ID))
	}
	resp := &registryv1.ImportVendorModelsResponse{}
	for _, vm := range models {
		m := Model{
			OrganizationID: org,
			Name:           vm.ID,
			DisplayName:    vm.DisplayName,
			Vendor:         vm.Vendor,
			LifecycleState: LifecycleProposed,
			Card: ModelCard{
				VendorModelID:    vm.ID,
				InputModalities:  vm.InputModalities,
				OutputModalities: vm.OutputModalities,
			},
		}
		if ep.Region != "" {
			m.Card.Regions = []string{ep.Region}
		}
		err := s.store.CreateModel(ctx, m)
		var ve *ValidationError
		switch {
		case err == nil:
			resp.Created = append(resp.Created, modelToProto(m.Clone()))
		case errors.Is(err, ErrAlreadyExists):
			resp.Existing = append(resp.Existing, vm.ID)
		case errors.As(err, &ve):
			resp.Skipped = append(resp.Skipped, &registryv1.SkippedVendorModel{VendorModelId: vm.ID, Reason: ve.Error()})
		default:
			return nil, toStatus(err)
		}
	}
	return resp, nil
}

// listOpenAIModels reads GET {base_url}/models.
func listOpenAIModels(ctx context.Context, client *http.Client, ep Endpoint, secret string) ([]VendorModel, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(ep.BaseURL, "/")+"/models", nil)
	if err != nil {
		return nil, err
	}
	if secret != "" {
		r.Header.Set("Authorization", "Bearer "+secret)
	}
	res, err := client.Do(r)
	if err != nil {
		return nil, err
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxCatalogue))
		return nil, fmt.Errorf("list models: vendor answered %s", res.Status)
	}
	var list struct {
		Data []struct {
			ID      string `json:"id"`
			OwnedBy string `json:"owned_by"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, maxCatalogue)).Decode(&list); err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	out := make([]VendorModel, 0, len(list.Data))
	for _, d := range list.Data {
		vendor := d.OwnedBy
		if ep.Provider == ProviderOpenAI || vendor == "" || vendor == "system" {
			vendor = string(ep.Provider)
		}
		out = append(out, VendorModel{ID: d.ID, DisplayName: d.ID, Vendor: vendor})
	}
	return out, nil
}

// bedrockControlPlane returns the Bedrock control-plane URL beside an endpoint's runtime URL:
// AWS serves ListFoundationModels from bedrock.<region>..., generations from
// bedrock-runtime.<region>...; any other host (a proxy, the simulator) serves both.
func bedrockControlPlane(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	if rest, ok := strings.CutPrefix(u.Host, "bedrock-runtime."); ok {
		u.Host = "bedrock." + rest
	}
	return u.String(), nil
}

// listBedrockModels calls Bedrock's ListFoundationModels with the endpoint's region and
// "ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]" credential.
func listBedrockModels(ctx context.Context, client *http.Client, ep Endpoint, secret string) ([]VendorModel, error) {
	akid, rest, ok := strings.Cut(secret, ":")
	if !ok {
		return nil, errors.New("bedrock credential must be ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]")
	}
	key, token, _ := strings.Cut(rest, ":")
	base, err := bedrockControlPlane(ep.BaseURL)
	if err != nil {
		return nil, err
	}
	bc := bedrock.New(bedrock.Options{
		Region:       ep.Region,
		BaseEndpoint: aws.String(base),
		Credentials:  credentials.NewStaticCredentialsProvider(akid, key, token),
		HTTPClient:   client,
	})
	out, err := bc.ListFoundationModels(ctx, &bedrock.ListFoundationModelsInput{})
	if err != nil {
		return nil, fmt.Errorf("list foundation models: %w", err)
	}
	models := make([]VendorModel, 0, len(out.ModelSummaries))
	for _, ms := range out.ModelSummaries {
		models = append(models, VendorModel{
			ID:               aws.ToString(ms.ModelId),
			DisplayName:      aws.ToString(ms.ModelName),
			Vendor:           aws.ToString(ms.ProviderName),
			InputModalities:  bedrockModalities(ms.InputModalities),
			OutputModalities: bedrockModalities(ms.OutputModalities),
		})
	}
	return models, nil
}

func bedrockModalities(ms []bedrocktypes.ModelModality) []Modality {
	var out []Modality
	for _, m := range ms {
		switch m {
		case bedrocktypes.ModelModalityText:
			out = append(out, ModalityText)
		case bedrocktypes.ModelModalityImage:
			out = append(out, ModalityImage)
		case bedrocktypes.ModelModalityEmbedding:
			out = append(out, ModalityEmbedding)
		}
	}
	return out
}
