package registrymem_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/fmgate/fmgate/services/registry"
	"github.com/fmgate/fmgate/services/registry/registrymem"
	"github.com/fmgate/fmgate/services/registry/registrytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStore(t *testing.T) {
	registrytest.TestStore(t, func(t *testing.T) registry.Store { return registrymem.New() })
}
