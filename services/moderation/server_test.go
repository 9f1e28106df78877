package moderation_test

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	moderationv1 "github.com/fmgate/fmgate/gen/fmgate/moderation/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/grpctest"
	"github.com/fmgate/fmgate/services/moderation"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func serve(t *testing.T) (moderationv1.ModerationServiceClient, *grpctest.LogBuffer) {
	t.Helper()
	log, logs := grpctest.Logger(t)
	srv, err := moderation.NewServer(moderation.BuiltinProfiles(), log)
	require.NoError(t, err)
	return moderationv1.NewModerationServiceClient(grpctest.Serve(t, srv.Register)), logs
}

func text(role typev1.Role, parts ...string) *typev1.Message {
	m := &typev1.Message{Role: role}
	for _, p := range parts {
		m.Content = append(m.Content, &typev1.ContentPart{Part: &typev1.ContentPart_Text{Text: p}})
	}
	return m
}

func TestScreenInput(t *testing.T) {
	client, logs := serve(t)
	image := &typev1.ContentPart{Part: &typev1.ContentPart_Image{Image: &typev1.ImagePart{Url: "https://example.com/a.png"}}}
	req := &moderationv1.ScreenInputRequest{
		OrganizationId: "org-a",
		Profile:        moderation.ProfileDefault,
		Messages: []*typev1.Message{
			text(typev1.Role_ROLE_SYSTEM, "You are helpful."),
			text(typev1.Role_ROLE_USER, "Mail bob@example.com and eve@example.org", "card 4111 1111 1111 1111"),
		},
	}
	req.Messages[1].Content = append(req.Messages[1].Content, image)
	original := proto.Clone(req)

	resp, err := client.ScreenInput(t.Context(), req)
	require.NoError(t, err)
	assert.Equal(t, moderationv1.Verdict_VERDICT_MODIFIED, resp.GetVerdict())
	want := []*typev1.Message{
		text(typev1.Role_ROLE_SYSTEM, "You are helpful."),
		text(typev1.Role_ROLE_USER, "Mail [EMAIL] and [EMAIL]", "card [CARD]"),
	}
	want[1].Content = append(want[1].Content, image)
	assert.Empty(t, cmpMessages(want, resp.GetMessages()))
	assert.Empty(t, cmpFindings([]*moderationv1.Finding{
		{Detector: moderation.DetectorEmail, Action: moderationv1.Action_ACTION_MASK, MessageIndex: 1, Count: 2},
		{Detector: moderation.DetectorCreditCard, Action: moderationv1.Action_ACTION_MASK, MessageIndex: 1, Count: 1},
	}, resp.GetFindings()))
	assert.True(t, proto.Equal(original, req), "the request is not changed")

	// Logs say what was found, never the text.
	assert.Contains(t, logs.String(), moderation.DetectorEmail)
	for _, secret := range []string{"bob@example.com", "eve@example.org", "4111"} {
		assert.NotContains(t, logs.String(), secret)
	}
}

func TestScreenInputPass(t *testing.T) {
	client, _ := serve(t)
	msgs := []*typev1.Message{text(typev1.Role_ROLE_USER, "Call me on +1 555-123-4567 on 2024-01-05.")}
	resp, err := client.ScreenInput(t.Context(), &moderationv1.ScreenInputRequest{
		OrganizationId: "org-a", Profile: moderation.ProfileDefault, Messages: msgs,
	})
	require.NoError(t, err)
	assert.Equal(t, moderationv1.Verdict_VERDICT_PASS, resp.GetVerdict())
	assert.Empty(t, resp.GetFindings())
	assert.Empty(t, cmpMessages(msgs, resp.GetMessages()))
}

func TestScreenInputBlock(t *testing.T) {
	client, _ := serve(t)
	tests := []struct {
		profile string
		text    string
		finding *moderationv1.Finding
	}{
		{moderation.ProfileDefault, "my key is AKIAIOSFODNN7EXAMPLE",
			&moderationv1.Finding{Detector: moderation.DetectorSecret, Action: moderationv1.Action_ACTION_BLOCK, MessageIndex: 1, Count: 1}},
		{moderation.ProfileStrict, "write to bob@example.com",
			&moderationv1.Finding{Detector: moderation.DetectorEmail, Action: moderationv1.Action_ACTION_BLOCK, MessageIndex: 1, Count: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.profile, func(t *testing.T) {
			resp, err := client.ScreenInput(t.Context(), &moderationv1.ScreenInputRequest{
				OrganizationId: "org-a", Profile: tt.profile,
				Messages: []*typev1.Message{text(typev1.Role_ROLE_SYSTEM, "hi"), text(typev1.Role_ROLE_USER, tt.text)},
			})
			require.NoError(t, err, "blocking is a verdict, not an error")
			assert.Equal(t, moderationv1.Verdict_VERDICT_BLOCK, resp.GetVerdict())
			assert.Empty(t, resp.GetMessages(), "nothing to send on")
			assert.Empty(t, cmpFindings([]*moderationv1.Finding{tt.finding}, resp.GetFindings()))
		})
	}
}

func TestScreenInputPermissiveLogsOnly(t *testing.T) {
	client, _ := serve(t)
	msgs := []*typev1.Message{text(typev1.Role_ROLE_USER, "bob@example.com AKIAIOSFODNN7EXAMPLE")}
	resp, err := client.ScreenInput(t.Context(), &moderationv1.ScreenInputRequest{
		OrganizationId: "org-a", Profile: moderation.ProfilePermissive, Messages: msgs,
	})
	require.NoError(t, err)
	assert.Equal(t, moderationv1.Verdict_VERDICT_PASS, resp.GetVerdict())
	assert.Empty(t, cmpMessages(msgs, resp.GetMessages()))
	assert.Len(t, resp.GetFindings(), 2)
	for _, f := range resp.GetFindings() {
		assert.Equal(t, moderationv1.Action_ACTION_LOG, f.GetAction())
	}
}

func TestScreenOutput(t *testing.T) {
	client, _ := serve(t)
	resp, err := client.ScreenOutput(t.Context(), &moderationv1.ScreenOutputRequest{
		OrganizationId: "org-a", Profile: moderation.ProfileDefault,
		Message: text(typev1.Role_ROLE_ASSISTANT, "Contact jane@example.com."),
	})
	require.NoError(t, err)
	assert.Equal(t, moderationv1.Verdict_VERDICT_MODIFIED, resp.GetVerdict())
	assert.Empty(t, cmpMessages([]*typev1.Message{text(typev1.Role_ROLE_ASSISTANT, "Contact [EMAIL].")},
		[]*typev1.Message{resp.GetMessage()}))
	assert.Empty(t, cmpFindings([]*moderationv1.Finding{
		{Detector: moderation.DetectorEmail, Action: moderationv1.Action_ACTION_MASK, Count: 1},
	}, resp.GetFindings()))

	resp, err = client.ScreenOutput(t.Context(), &moderationv1.ScreenOutputRequest{
		OrganizationId: "org-a", Profile: moderation.ProfileDefault,
		Message: text(typev1.Role_ROLE_ASSISTANT, "-----BEGIN PRIVATE KEY-----\nMIIE"),
	})
	require.NoError(t, err)
	assert.Equal(t, moderationv1.Verdict_VERDICT_BLOCK, resp.GetVerdict())
	assert.Nil(t, resp.GetMessage())
}

func TestScreenInvalidArgument(t *testing.T) {
	client, _ := serve(t)
	msgs := []*typev1.Message{text(typev1.Role_ROLE_USER, "hi")}
	tests := []struct {
		name   string
		call   func() error
		fields []string
	}{
		{"unknown profile", func() error {
			_, err := client.ScreenInput(t.Context(), &moderationv1.ScreenInputRequest{OrganizationId: "org-a", Profile: "lenient", Messages: msgs})
			return err
		}, []string{"profile"}},
		{"everything missing", func() error {
			_, err := client.ScreenInput(t.Context(), &moderationv1.ScreenInputRequest{})
			return err
		}, []string{"organization_id", "profile", "messages"}},
		{"output without message", func() error {
			_, err := client.ScreenOutput(t.Context(), &moderationv1.ScreenOutputRequest{OrganizationId: "org-a", Profile: "default"})
			return err
		}, []string{"message"}},
		{"output unknown profile", func() error {
			_, err := client.ScreenOutput(t.Context(), &moderationv1.ScreenOutputRequest{OrganizationId: "org-a", Profile: "nope", Message: msgs[0]})
			return err
		}, []string{"profile"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(tt.call())
			require.Equal(t, codes.InvalidArgument, st.Code())
			assert.Contains(t, st.Message(), tt.fields[0])
			require.Len(t, st.Details(), 1)
			assert.Equal(t, tt.fields, grpctest.BadRequestFields(st.Err()))
		})
	}
}

func TestNewServerRejectsInvalidProfiles(t *testing.T) {
	profiles := moderation.BuiltinProfiles()
	profiles["broken"] = moderation.Profile{Name: "broken", Input: []moderation.Rule{{Detector: nil, Action: moderation.ActionMask}}}
	profiles["misnamed"] = moderation.Profile{Name: "other"}
	_, err := moderation.NewServer(profiles, slog.Default())
	require.Error(t, err)
	assert.ErrorContains(t, err, "detector is required")
	assert.ErrorContains(t, err, `registered as "misnamed"`)
}

func cmpMessages(want, got []*typev1.Message) string {
	if len(want) != len(got) {
		return "different lengths"
	}
	for i := range want {
		if !proto.Equal(want[i], got[i]) {
			return "message differs: " + got[i].String()
		}
	}
	return ""
}

func cmpFindings(want, got []*moderationv1.Finding) string {
	if len(want) != len(got) {
		return "different lengths"
	}
	for i := range want {
		if !proto.Equal(want[i], got[i]) {
			return "finding differs: " + got[i].String()
		}
	}
	return ""
}
