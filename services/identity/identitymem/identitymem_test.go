package identitymem_test

import (
	"testing"

	"github.com/fmgate/fmgate/services/identity"
	"github.com/fmgate/fmgate/services/identity/identitymem"
	"github.com/fmgate/fmgate/services/identity/identitytest"
)

func TestStore(t *testing.T) {
	identitytest.TestStore(t, func(*testing.T) identity.Store { return identitymem.New() })
}
