package registry

import (
	"context"
	"maps"
	"slices"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
)

// everyState lists every lifecycle state, for the catalogue view.
var everyState = slices.Sorted(maps.Values(lifecycleToProto))

// ListCatalogModels is the administrators' view of the catalogue: ListModels with every
// lifecycle state kept unless the request narrows it. It is a separate RPC because ListModels
// is internal (the edge lists routable models through it) and the admin layer guards only
// administrative RPCs: one RPC cannot be both.
func (s *Server) ListCatalogModels(ctx context.Context, req *registryv1.ListCatalogModelsRequest) (*registryv1.ListCatalogModelsResponse, error) {
	states := req.GetLifecycleStates()
	if len(states) == 0 {
		states = everyState
	}
	resp, err := s.ListModels(ctx, &registryv1.ListModelsRequest{
		OrganizationId: req.GetOrganizationId(), PageSize: req.GetPageSize(), PageToken: req.GetPageToken(),
		LifecycleStates: states, Vendor: req.GetVendor(), UseCaseTag: req.GetUseCaseTag(),
	})
	if err != nil {
		return nil, err
	}
	return &registryv1.ListCatalogModelsResponse{Models: resp.GetModels(), NextPageToken: resp.GetNextPageToken()}, nil
}
