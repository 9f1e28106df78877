package moderation

import (
	"errors"
	"io"
	"strings"
	"unicode"

	"google.golang.org/grpc"

	moderationv1 "github.com/fmgate/fmgate/gen/fmgate/moderation/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

// maxHeldBack bounds the text a stream holds back waiting for a safe boundary. Past it the
// held text is screened and released as it is: a detection split across that cut could be
// missed, which is why the bound is far above any e-mail address, card number or key.
const maxHeldBack = 8 << 10

// ScreenStream implements moderationv1.ModerationServiceServer: it screens an answer piece
// by piece in one call (see the contract), so a streamed answer costs one RPC, not one per
// chunk.
func (s *Server) ScreenStream(stream grpc.BidiStreamingServer[moderationv1.ScreenStreamRequest, moderationv1.ScreenStreamResponse]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	p, err := s.profile(first.GetOrganizationId(), first.GetProfile(), nil)
	if err != nil {
		return err
	}
	var held strings.Builder
	total := map[string]int32{}
	verdict := moderationv1.Verdict_VERDICT_PASS
	defer func() {
		if len(total) > 0 {
			s.log.InfoContext(ctx, "screen stream", "organization_id", first.GetOrganizationId(), "profile", p.Name,
				"verdict", verdict.String(), "findings", total)
		}
	}()
	for req := first; ; {
		held.WriteString(req.GetTextDelta())
		buf := held.String()
		cut := len(buf)
		if !req.GetEnd() && !req.GetFlush() {
			cut = safeCut(buf)
		}
		resp := &moderationv1.ScreenStreamResponse{Verdict: moderationv1.Verdict_VERDICT_PASS}
		if cut > 0 {
			res := Screen(p.Output, buf[:cut])
			held.Reset()
			held.WriteString(buf[cut:])
			for _, h := range res.Hits {
				resp.Findings = append(resp.Findings, &moderationv1.Finding{
					Detector: h.Detector, Action: toProtoAction(h.Action), Count: int32(min(h.Count, 1<<31-1)),
				})
				total[h.Detector] += int32(min(h.Count, 1<<31-1))
			}
			switch {
			case res.Blocked:
				resp.Verdict = moderationv1.Verdict_VERDICT_BLOCK
				verdict = resp.Verdict
				return stream.Send(resp)
			case res.Modified:
				resp.Verdict = moderationv1.Verdict_VERDICT_MODIFIED
				verdict = resp.Verdict
			}
			resp.Text = res.Text
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		if req.GetEnd() {
			return nil
		}
		if req, err = stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return apierr.Field("end", "the stream closed before a request with end set")
			}
			return err
		}
	}
}

// safeCut returns how much of buf can be screened and released now: up to the last
// whitespace after which no detection can still grow back across the cut. A cut is not safe
// right after a token holding a digit (a card number may continue in its next group) or
// inside a PEM block that has not ended. When nothing is safe but buf is over maxHeldBack,
// all of it is released.
func safeCut(buf string) int {
	limit := len(buf)
	if i := strings.LastIndex(buf, "-----BEGIN"); i >= 0 {
		// A PEM block is closed once its END line is complete; until then nothing from its
		// BEGIN on may be released.
		j := strings.Index(buf[i:], "-----END")
		if j < 0 || strings.IndexByte(buf[i+j:], '\n') < 0 {
			limit = i
		}
	}
	for end := limit; end > 0; {
		ws := strings.LastIndexFunc(buf[:end], unicode.IsSpace)
		if ws < 0 {
			break
		}
		token := buf[:ws]
		if start := strings.LastIndexFunc(token, unicode.IsSpace); start >= 0 {
			token = token[start+1:]
		}
		if !strings.ContainsFunc(token, unicode.IsDigit) {
			return ws + 1
		}
		end = ws
	}
	if len(buf) > maxHeldBack {
		return len(buf)
	}
	return 0
}
