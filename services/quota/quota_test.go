package quota_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/services/quota"
)

func validLimit() quota.Limit {
	return quota.Limit{
		Name:   "acme-rpm",
		Match:  quota.Match{OrganizationID: "acme"},
		Scope:  quota.Scope{By: quota.BySubject},
		Kind:   quota.KindRequests,
		Amount: 60,
		Window: time.Minute,
	}
}

func TestLimitValidate(t *testing.T) {
	require.NoError(t, validLimit().Validate())

	for name, tc := range map[string]struct {
		edit func(*quota.Limit)
		want string
	}{
		"no name":         {func(l *quota.Limit) { l.Name = "" }, "name is required"},
		"no organization": {func(l *quota.Limit) { l.Match.OrganizationID = "" }, "match.organization_id is required"},
		"no scope":        {func(l *quota.Limit) { l.Scope.By = 0 }, "scope.by"},
		"bad kind":        {func(l *quota.Limit) { l.Kind = 7 }, "kind must be"},
		"zero amount":     {func(l *quota.Limit) { l.Amount = 0 }, "amount"},
		"huge amount":     {func(l *quota.Limit) { l.Amount = quota.MaxAmount + 1 }, "amount"},
		"tiny window":     {func(l *quota.Limit) { l.Window = time.Microsecond }, "window"},
	} {
		t.Run(name, func(t *testing.T) {
			l := validLimit()
			tc.edit(&l)
			assert.ErrorContains(t, l.Validate(), tc.want)
		})
	}

	// Every problem at once.
	err := quota.Limit{}.Validate()
	require.Error(t, err)
	for _, want := range []string{"name", "organization_id", "scope.by", "kind", "amount", "window"} {
		assert.ErrorContains(t, err, want)
	}
}

func TestNewServerReportsEveryProblem(t *testing.T) {
	bad := validLimit()
	bad.Name = "broken"
	bad.Amount = -1
	_, err := quota.NewServer(nopLimiter{}, []quota.Limit{validLimit(), validLimit(), bad}, nil)
	require.Error(t, err)
	assert.ErrorContains(t, err, `limit "acme-rpm": name is not unique`)
	assert.ErrorContains(t, err, `limit "broken": amount`)

	_, err = quota.NewServer(nil, nil, nil)
	assert.Error(t, err)
}
