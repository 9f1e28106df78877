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
	lic := model.GetLicense()
	if !lic.GetAcceptanceRequired() {
		return nil
	}
	for _, a := range p.GetAcceptedLicenses() {
		if a.GetModel() == model.GetName() && a.GetLicenseName() == lic.GetName() && a.GetLicenseVersion() == lic.GetVersion() {
			return nil
		}
	}
	st := status.New(codes.FailedPrecondition, licenseRefusal(p, model))
	withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonLicenseNotAccepted, Domain: apierr.Domain, Metadata: map[string]string{
		"model": model.GetName(), "license_name": lic.GetName(), "license_version": lic.GetVersion(), "team_id": p.GetTeamId(),
	}})
	if err != nil { // only for details that cannot be marshalled
		return st.Err()
	}
	return withInfo.Err()
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
