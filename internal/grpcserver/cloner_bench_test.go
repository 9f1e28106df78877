package grpcserver

import (
	"testing"

	"github.com/fullstorydev/grpchan/inprocgrpc"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

// BenchmarkCloner compares grpchan's default cloner with protoCloner on a dispatch request,
// which the in-process channel deep-copies on every call.
func BenchmarkCloner(b *testing.B) {
	in := &dispatchv1.GenerateRequest{Messages: []*typev1.Message{{
		Role:    typev1.Role_ROLE_USER,
		Content: []*typev1.ContentPart{{Part: &typev1.ContentPart_Text{Text: "Summarise the quarterly report in three sentences for the finance team."}}},
	}}}
	for _, c := range []struct {
		name   string
		cloner inprocgrpc.Cloner
	}{{"grpchan", inprocgrpc.ProtoCloner{}}, {"fmgate", protoCloner{}}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var out dispatchv1.GenerateRequest
				if err := c.cloner.Copy(&out, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
