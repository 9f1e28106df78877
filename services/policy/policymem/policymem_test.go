package policymem_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/fmgate/fmgate/services/policy"
	"github.com/fmgate/fmgate/services/policy/policymem"
	"github.com/fmgate/fmgate/services/policy/policytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStore(t *testing.T) {
	policytest.TestStore(t, func(t *testing.T) policy.Store { return policymem.New() })
}
