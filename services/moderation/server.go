package moderation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	moderationv1 "github.com/fmgate/fmgate/gen/fmgate/moderation/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

// Server implements moderationv1.ModerationServiceServer.
type Server struct {
	moderationv1.UnimplementedModerationServiceServer
	profiles map[string]Profile
	log      *slog.Logger
}

// NewServer returns a Server that screens with profiles, keyed by the name requests give
// (BuiltinProfiles, possibly extended). It reports every invalid profile at once.
func NewServer(profiles map[string]Profile, log *slog.Logger) (*Server, error) {
	var errs []error
	for name, p := range profiles {
		if name != p.Name {
			errs = append(errs, fmt.Errorf("profile %q is registered as %q", p.Name, name))
		}
		errs = append(errs, p.Validate())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("moderation profiles: %w", err)
	}
	return &Server{profiles: maps.Clone(profiles), log: log}, nil
}

// Register adds the service to r. All-in-one and mesh make the same call.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	moderationv1.RegisterModerationServiceServer(r, s)
}

// ScreenInput screens a prompt under a profile's input rules. The request is left as it was;
// the response carries new messages. A BLOCK verdict carries no messages: there is nothing
// to send on.
func (s *Server) ScreenInput(ctx context.Context, req *moderationv1.ScreenInputRequest) (*moderationv1.ScreenInputResponse, error) {
	var violations []apierr.FieldViolation
	if len(req.GetMessages()) == 0 {
		violations = append(violations, apierr.FieldViolation{Field: "messages", Description: "must not be empty"})
	}
	p, err := s.profile(req.GetOrganizationId(), req.GetProfile(), violations)
	if err != nil {
		return nil, err
	}
	msgs, findings, verdict := screenMessages(p.Input, req.GetMessages())
	s.logVerdict(ctx, "screen input", req.GetOrganizationId(), p.Name, verdict, findings)
	if verdict == moderationv1.Verdict_VERDICT_BLOCK {
		msgs = nil
	}
	return &moderationv1.ScreenInputResponse{Verdict: verdict, Messages: msgs, Findings: findings}, nil
}

// ScreenOutput screens an answer under a profile's output rules, as ScreenInput does.
func (s *Server) ScreenOutput(ctx context.Context, req *moderationv1.ScreenOutputRequest) (*moderationv1.ScreenOutputResponse, error) {
	var violations []apierr.FieldViolation
	if req.GetMessage() == nil {
		violations = append(violations, apierr.FieldViolation{Field: "message", Description: "is required"})
	}
	p, err := s.profile(req.GetOrganizationId(), req.GetProfile(), violations)
	if err != nil {
		return nil, err
	}
	msgs, findings, verdict := screenMessages(p.Output, []*typev1.Message{req.GetMessage()})
	s.logVerdict(ctx, "screen output", req.GetOrganizationId(), p.Name, verdict, findings)
	resp := &moderationv1.ScreenOutputResponse{Verdict: verdict, Findings: findings}
	if verdict != moderationv1.Verdict_VERDICT_BLOCK {
		resp.Message = msgs[0]
	}
	return resp, nil
}

const maxNameLen = 128

// profile validates the fields every request has and returns the named profile, or an
// INVALID_ARGUMENT naming every bad field, violations included.
func (s *Server) profile(org, name string, violations []apierr.FieldViolation) (Profile, error) {
	if org == "" {
		violations = append(violations, apierr.FieldViolation{Field: "organization_id", Description: "is required"})
	}
	p, ok := s.profiles[name]
	switch {
	case name == "":
		violations = append(violations, apierr.FieldViolation{Field: "profile", Description: "is required"})
	case !ok && len(name) > maxNameLen:
		violations = append(violations, apierr.FieldViolation{Field: "profile", Description: "unknown profile"})
	case !ok:
		violations = append(violations, apierr.FieldViolation{Field: "profile", Description: fmt.Sprintf("unknown profile %q", name)})
	}
	// Fields are reported in request order.
	sortViolations(violations)
	if len(violations) > 0 {
		return Profile{}, apierr.InvalidArgument(violations...)
	}
	return p, nil
}

var fieldOrder = map[string]int{"organization_id": 1, "profile": 2, "messages": 3, "message": 3}

func sortViolations(vs []apierr.FieldViolation) {
	for i := 1; i < len(vs); i++ {
		for j := i; j > 0 && fieldOrder[vs[j].Field] < fieldOrder[vs[j-1].Field]; j-- {
			vs[j], vs[j-1] = vs[j-1], vs[j]
		}
	}
}

// screenMessages screens the text parts of every message with rules. It returns copies of
// the messages with masked text, the findings per (rule, message) in message then rule
// order, and the verdict.
func screenMessages(rules []Rule, msgs []*typev1.Message) ([]*typev1.Message, []*moderationv1.Finding, moderationv1.Verdict) {
	out := make([]*typev1.Message, len(msgs))
	var findings []*moderationv1.Finding
	modified, blocked := false, false
	counts := make([]int, len(rules))
	for mi, m := range msgs {
		clear(counts)
		c := proto.CloneOf(m)
		if c == nil {
			c = &typev1.Message{}
		}
		for _, part := range c.GetContent() {
			text, ok := part.GetPart().(*typev1.ContentPart_Text)
			if !ok || text.Text == "" {
				continue
			}
			res := Screen(rules, text.Text)
			text.Text = res.Text
			modified = modified || res.Modified
			blocked = blocked || res.Blocked
			for _, h := range res.Hits {
				for ri, r := range rules {
					if r.Detector.Name() == h.Detector {
						counts[ri] += h.Count
					}
				}
			}
		}
		for ri, r := range rules {
			if counts[ri] > 0 {
				findings = append(findings, &moderationv1.Finding{
					Detector:     r.Detector.Name(),
					Action:       toProtoAction(r.Action),
					MessageIndex: int32(mi),
					Count:        int32(min(counts[ri], 1<<31-1)),
				})
			}
		}
		out[mi] = c
	}
	verdict := moderationv1.Verdict_VERDICT_PASS
	switch {
	case blocked:
		verdict = moderationv1.Verdict_VERDICT_BLOCK
	case modified:
		verdict = moderationv1.Verdict_VERDICT_MODIFIED
	}
	return out, findings, verdict
}

func toProtoAction(a Action) moderationv1.Action {
	switch a {
	case ActionLog:
		return moderationv1.Action_ACTION_LOG
	case ActionMask:
		return moderationv1.Action_ACTION_MASK
	case ActionBlock:
		return moderationv1.Action_ACTION_BLOCK
	}
	return moderationv1.Action_ACTION_UNSPECIFIED
}

// logVerdict logs a screening that found something: which detectors, how often, never what.
func (s *Server) logVerdict(ctx context.Context, msg, org, profile string, v moderationv1.Verdict, findings []*moderationv1.Finding) {
	if len(findings) == 0 {
		return
	}
	counts := make(map[string]int32, len(findings))
	for _, f := range findings {
		counts[f.GetDetector()] += f.GetCount()
	}
	s.log.InfoContext(ctx, msg, "organization_id", org, "profile", profile,
		"verdict", v.String(), "findings", counts)
}
