package dispatchmem_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/fmgate/fmgate/services/dispatch"
	"github.com/fmgate/fmgate/services/dispatch/dispatchmem"
	"github.com/fmgate/fmgate/services/dispatch/dispatchtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCredentialStore(t *testing.T) {
	dispatchtest.TestCredentialStore(t, func(t *testing.T) dispatch.CredentialStore { return dispatchmem.New() })
}
