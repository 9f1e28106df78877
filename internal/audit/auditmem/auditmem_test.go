package auditmem_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fmgate/fmgate/internal/audit"
	"github.com/fmgate/fmgate/internal/audit/auditmem"
	"github.com/fmgate/fmgate/internal/audit/audittest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStore(t *testing.T) {
	audittest.TestStore(t, func(t *testing.T) (audit.Store, audittest.Backdoor) {
		s := auditmem.New()
		return s, audittest.Backdoor{
			Tamper: func(t *testing.T, org, service string, seq int64, mutate func(*audit.Event)) {
				require.True(t, s.Tamper(org, service, seq, mutate))
			},
			Delete: func(t *testing.T, org, service string, seq int64) {
				require.True(t, s.Remove(org, service, seq))
			},
		}
	})
}
