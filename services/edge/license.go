package edge

import (
	"fmt"
	"net/http"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

// ReasonLicenseNotAccepted is the ErrorInfo reason of a refusal (FAILED_PRECONDITION) of a
// model whose licence requires acceptance that the caller's team has not given for the
// licence's current name and version. Its metadata names the model, licence_name,
// licence_version and team_id, so a client can offer the acceptance without parsing the
// message.
//
// Over HTTP every ingress answers LicenseNotAcceptedHTTPStatus: the OpenAI-compatible API
// with code license_not_accepted, the Anthropic-compatible API with permission_error, the
// native REST API with the status and its details.
const ReasonLicenseNotAccepted = "LICENSE_NOT_ACCEPTED"

// LicenseNotAcceptedHTTPStatus is the HTTP status of a ReasonLicenseNotAccepted refusal on
// the vendor dialects: 403, the caller may not use the model until someone accepts its
// licence, which is what those APIs' SDKs raise as permission denied, as for a model not
// granted.
const LicenseNotAcceptedHTTPStatus = http.StatusForbidden

// PermissionAcceptLicense is the permission AcceptLicense asks for (identity's
// eula.accept), named in refusals so the caller knows whom to ask.
const PermissionAcceptLicense = "eula.accept"

// checkLicense refuses p the model when its card says its licence must be accepted and p's
// team has accepted neither that licence nor that version of it for that model. Acceptances
// arrive with the principal (identity fills Principal.accepted_licenses at Authenticate), so
// a fresh acceptance applies as soon as the edge's cached principal expires (PrincipalTTL).
func checkLicense(p *identityv1.Principal, model *registryv1.Model) error {
	if licenseAccepted(p, model) {
		return nil
	}
	return licenseError(p, model, licenseRefusal(p, model))
}

// licenseAccepted reports whether model's licence lets p's team use it: it needs no
// acceptance, or the team accepted that licence, in that version, for that model.
func licenseAccepted(p *identityv1.Principal, model *registryv1.Model) bool {
	lic := model.GetLicense()
	if !lic.GetAcceptanceRequired() {
		return true
	}
	for _, a := range p.GetAcceptedLicenses() {
		if a.GetModel() == model.GetName() && a.GetLicenseName() == lic.GetName() && a.GetLicenseVersion() == lic.GetVersion() {
			return true
		}
	}
	return false
}

// licenseError is the ReasonLicenseNotAccepted refusal of model's licence, saying msg.
func licenseError(p *identityv1.Principal, model *registryv1.Model, msg string) error {
	lic := model.GetLicense()
	st := status.New(codes.FailedPrecondition, msg)
	withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonLicenseNotAccepted, Domain: apierr.Domain, Metadata: map[string]string{
		"model": model.GetName(), "license_name": lic.GetName(), "license_version": lic.GetVersion(), "team_id": p.GetTeamId(),
	}})
	if err != nil { // only for details that cannot be marshalled
		return st.Err()
	}
	return withInfo.Err()
}

// licensedRoute returns route without the endpoints of fallback models whose licence
// requires an acceptance p's team has not given (licenseAccepted), with their tiers and
// models: a fallback serves only teams that may use it. The requested model's own licence
// is checkLicense's. An endpoint whose model has no card among route.fallback_models is
// dropped too, since its terms are unknown. When nothing is left, p is refused with the
// licence of the first fallback dropped, so that the team learns which one to accept. The
// route is shared through the cache: it is copied when something is dropped, never changed.
//
// A registry that predates endpoint_models sends none: the route is then kept whole, as
// before fallback licences were checked.
func licensedRoute(p *identityv1.Principal, route *registryv1.ResolveRouteResponse) (*registryv1.ResolveRouteResponse, error) {
	models := route.GetEndpointModels()
	if len(models) != len(route.GetEndpoints()) {
		return route, nil
	}
	primary := route.GetModel().GetName()
	usable := func(i int) bool {
		if models[i] == primary {
			return true
		}
		card := fallbackCard(route, models[i])
		return card != nil && licenseAccepted(p, card)
	}
	first := -1 // the first endpoint dropped
	for i := range models {
		if !usable(i) {
			first = i
			break
		}
	}
	if first < 0 {
		return route, nil
	}
	out := filterRoute(route, usable)
	if len(out.GetEndpoints()) > 0 {
		return out, nil
	}
	card := fallbackCard(route, models[first])
	if card == nil {
		return nil, status.Errorf(codes.Internal, "route of model %q names endpoint model %q without its card", primary, models[first])
	}
	return nil, licenseError(p, card, fmt.Sprintf("model %q can only be served by its fallback: %s", primary, licenseRefusal(p, card)))
}

// fallbackCard returns the card of route's fallback model name, or nil.
func fallbackCard(route *registryv1.ResolveRouteResponse, name string) *registryv1.Model {
	for _, m := range route.GetFallbackModels() {
		if m.GetName() == name {
			return m
		}
	}
	return nil
}

// licenseRefusal says which model, licence and version, which team, and how to accept.
func licenseRefusal(p *identityv1.Principal, model *registryv1.Model) string {
	lic := model.GetLicense()
	what := "licence " + strconv.Quote(lic.GetName())
	if v := lic.GetVersion(); v != "" {
		what += " version " + strconv.Quote(v)
	}
	if lic.GetUrl() != "" {
		what += " (" + lic.GetUrl() + ")"
	}
	how := fmt.Sprintf("(`fmgate licenses accept`, or IdentityService.AcceptLicense: POST /api/v1/orgs/%s/licenseAcceptances, "+
		"by someone with permission %s)", p.GetOrganizationId(), PermissionAcceptLicense)
	if p.GetTeamId() == "" {
		return fmt.Sprintf("model %q requires acceptance of its %s, and licences are accepted per team but %s belongs to no team: "+
			"use a credential of a team that has accepted it %s", model.GetName(), what, p.GetSubject(), how)
	}
	return fmt.Sprintf("model %q requires acceptance of its %s, which team %q has not accepted: accept it for the team %s",
		model.GetName(), what, p.GetTeamId(), how)
}
