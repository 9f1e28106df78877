package policy

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
)

var effectToProto = map[Effect]policyv1.Effect{
	EffectAllow: policyv1.Effect_EFFECT_ALLOW, EffectDeny: policyv1.Effect_EFFECT_DENY,
	EffectConstrain: policyv1.Effect_EFFECT_CONSTRAIN,
}

func effectFromProto(e policyv1.Effect) Effect {
	for k, v := range effectToProto {
		if v == e {
			return k
		}
	}
	return Effect(strings.ToLower(strings.TrimPrefix(e.String(), "EFFECT_"))) // invalid: Validate names it
}

func obligationsToProto(o Obligations) *policyv1.Obligations {
	out := &policyv1.Obligations{
		ModerationProfile: o.ModerationProfile, MaxOutputTokens: o.MaxOutputTokens,
		AllowedEndpointRegions: o.AllowedEndpointRegions, AllowedModalities: o.AllowedModalities,
		LogGroup: o.LogGroup, MaskPersonalData: o.MaskPersonalData, RequireBaaCoverage: o.RequireBAACoverage,
	}
	if d, ok := o.LogRetention.Limit(); ok {
		out.LogRetention = durationpb.New(d)
	}
	return out
}

func obligationsFromProto(o *policyv1.Obligations) Obligations {
	out := Obligations{
		ModerationProfile: o.GetModerationProfile(), MaxOutputTokens: o.GetMaxOutputTokens(),
		AllowedEndpointRegions: o.GetAllowedEndpointRegions(), AllowedModalities: o.GetAllowedModalities(),
		LogGroup: o.GetLogGroup(), MaskPersonalData: o.GetMaskPersonalData(), RequireBAACoverage: o.GetRequireBaaCoverage(),
	}
	if r := o.GetLogRetention(); r != nil {
		out.LogRetention = RetainFor(r.AsDuration())
	}
	return out
}

// ToProto returns the API form of p.
func ToProto(p Policy) *policyv1.Policy {
	out := &policyv1.Policy{
		OrganizationId: p.OrganizationID, Id: p.ID, Description: p.Description, Effect: effectToProto[p.Effect],
		Subjects: p.Subjects, Models: p.Models, Condition: p.Condition, Obligations: obligationsToProto(p.Obligations()),
		Revision: p.Revision, Etag: p.Etag, UpdatedBy: p.UpdatedBy,
	}
	if !p.CreateTime.IsZero() {
		out.CreateTime = timestamppb.New(p.CreateTime)
	}
	if !p.UpdateTime.IsZero() {
		out.UpdateTime = timestamppb.New(p.UpdateTime)
	}
	return out
}

// fromProto returns the content of p; output-only fields are dropped.
func fromProto(p *policyv1.Policy) Policy {
	out := Policy{
		OrganizationID: p.GetOrganizationId(), ID: p.GetId(), Description: p.GetDescription(),
		Effect: effectFromProto(p.GetEffect()), Subjects: p.GetSubjects(), Models: p.GetModels(),
		Condition: p.GetCondition(),
	}
	out.SetObligations(obligationsFromProto(p.GetObligations()))
	return out
}

func toProtoPtr(p *Policy) *policyv1.Policy {
	if p == nil {
		return nil
	}
	return ToProto(*p)
}

// Page tokens are opaque to clients and bound to the organization and the listing they
// came from, so a token of one tenant never pages through another's.
const (
	pagePolicies  = "p"
	pageRevisions = "r"
)

var errPageToken = errors.New("is not a page token of this listing")

func encodePageToken(kind, org, key, last string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + "\x00" + org + "\x00" + key + "\x00" + last))
}

func decodePageToken(token, kind, org, key string) (string, error) {
	if token == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return "", errPageToken
	}
	parts := strings.Split(string(b), "\x00")
	if len(parts) != 4 || parts[0] != kind || parts[1] != org || parts[2] != key {
		return "", errPageToken
	}
	return parts[3], nil
}

func decodeRevisionToken(token, org, id string) (int64, error) {
	s, err := decodePageToken(token, pageRevisions, org, id)
	if err != nil || s == "" {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, errPageToken
	}
	return n, nil
}
