package moderation_test

import (
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	moderationv1 "github.com/fmgate/fmgate/gen/fmgate/moderation/v1"
	"github.com/fmgate/fmgate/internal/grpctest"
	"github.com/fmgate/fmgate/services/moderation"
)

func streamClient(t *testing.T) moderationv1.ModerationServiceClient {
	t.Helper()
	log, _ := grpctest.Logger(t)
	srv, err := moderation.NewServer(moderation.BuiltinProfiles(), log)
	require.NoError(t, err)
	conn := grpctest.Serve(t, func(r grpc.ServiceRegistrar) { srv.Register(r) })
	return moderationv1.NewModerationServiceClient(conn)
}

// screenPieces sends the pieces in order (the last with end) and returns what came back.
func screenPieces(t *testing.T, c moderationv1.ModerationServiceClient, profile string, pieces []string) (string, []moderationv1.Verdict) {
	t.Helper()
	st, err := c.ScreenStream(t.Context())
	require.NoError(t, err)
	var out strings.Builder
	var verdicts []moderationv1.Verdict
	for i, p := range pieces {
		req := &moderationv1.ScreenStreamRequest{TextDelta: p, End: i == len(pieces)-1}
		if i == 0 {
			req.OrganizationId, req.Profile = "acme", profile
		}
		require.NoError(t, st.Send(req))
		resp, err := st.Recv()
		require.NoError(t, err)
		out.WriteString(resp.GetText())
		verdicts = append(verdicts, resp.GetVerdict())
		if resp.GetVerdict() == moderationv1.Verdict_VERDICT_BLOCK {
			break
		}
	}
	require.NoError(t, st.CloseSend())
	_, err = st.Recv()
	require.ErrorIs(t, err, io.EOF)
	return out.String(), verdicts
}

// Words split anywhere across pieces are screened whole, so an address or a card number cut
// by the vendor's chunking is still masked.
func TestScreenStreamMasksAcrossPieces(t *testing.T) {
	c := streamClient(t)
	text := "Write to bob@example.com or pay with 4111 1111 1111 1111 today, thanks."
	for _, size := range []int{1, 2, 3, 5, 8, 13, len(text)} {
		var pieces []string
		for i := 0; i < len(text); i += size {
			pieces = append(pieces, text[i:min(i+size, len(text))])
		}
		got, _ := screenPieces(t, c, moderation.ProfileDefault, pieces)
		assert.Equal(t, "Write to [EMAIL] or pay with [CARD] today, thanks.", got, "pieces of %d bytes", size)
	}
}

func TestScreenStreamReleasesCompleteWordsEarly(t *testing.T) {
	c := streamClient(t)
	st, err := c.ScreenStream(t.Context())
	require.NoError(t, err)
	require.NoError(t, st.Send(&moderationv1.ScreenStreamRequest{OrganizationId: "acme", Profile: moderation.ProfileDefault, TextDelta: "Hello wor"}))
	resp, err := st.Recv()
	require.NoError(t, err)
	assert.Equal(t, "Hello ", resp.GetText(), "the unfinished word is held back")
	require.NoError(t, st.Send(&moderationv1.ScreenStreamRequest{TextDelta: "ld", End: true}))
	resp, err = st.Recv()
	require.NoError(t, err)
	assert.Equal(t, "world", resp.GetText())
}

func TestScreenStreamBlocks(t *testing.T) {
	c := streamClient(t)
	got, verdicts := screenPieces(t, c, moderation.ProfileDefault, []string{"the key is AKIA", "ABCDEFGHIJKLMNOP and more ", "text"})
	assert.NotContains(t, got, "AKIA")
	assert.Equal(t, moderationv1.Verdict_VERDICT_BLOCK, verdicts[len(verdicts)-1])
}

func TestScreenStreamHoldsAPEMBlockUntilItEnds(t *testing.T) {
	c := streamClient(t)
	got, verdicts := screenPieces(t, c, moderation.ProfileDefault, []string{
		"here: -----BEGIN PRIVATE KEY-----\n", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n", "-----END PRIVATE KEY-----\n", "done",
	})
	assert.Equal(t, "here: ", got)
	assert.Equal(t, moderationv1.Verdict_VERDICT_BLOCK, verdicts[len(verdicts)-1])
}

func TestScreenStreamValidatesTheFirstMessage(t *testing.T) {
	c := streamClient(t)
	st, err := c.ScreenStream(t.Context())
	require.NoError(t, err)
	require.NoError(t, st.Send(&moderationv1.ScreenStreamRequest{OrganizationId: "acme", Profile: "nope", TextDelta: "x"}))
	_, err = st.Recv()
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Contains(t, grpctest.BadRequestFields(err), "profile")
}

func TestScreenStreamFlushReleasesHeldText(t *testing.T) {
	c := streamClient(t)
	st, err := c.ScreenStream(t.Context())
	require.NoError(t, err)
	require.NoError(t, st.Send(&moderationv1.ScreenStreamRequest{OrganizationId: "acme", Profile: moderation.ProfileDefault, TextDelta: "I will lo"}))
	resp, err := st.Recv()
	require.NoError(t, err)
	assert.Equal(t, "I will ", resp.GetText())
	require.NoError(t, st.Send(&moderationv1.ScreenStreamRequest{TextDelta: "ok", Flush: true}))
	resp, err = st.Recv()
	require.NoError(t, err)
	assert.Equal(t, "look", resp.GetText(), "flush releases the unfinished word")
	require.NoError(t, st.Send(&moderationv1.ScreenStreamRequest{TextDelta: " more", End: true}))
	resp, err = st.Recv()
	require.NoError(t, err)
	assert.Equal(t, " more", resp.GetText())
}
