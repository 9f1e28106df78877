package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fmgate/fmgate/internal/audit/auditpg"
	"github.com/fmgate/fmgate/internal/config"
	"github.com/fmgate/fmgate/internal/pg"
	"github.com/fmgate/fmgate/services/dispatch/dispatchpg"
	"github.com/fmgate/fmgate/services/identity/identitypg"
	"github.com/fmgate/fmgate/services/policy/policypg"
	"github.com/fmgate/fmgate/services/registry/registrypg"
)

// migrations are the services with a Postgres store, in the order their schemas migrate.
var migrations = []struct {
	service string
	schema  string
	migrate func(ctx context.Context, pool *pgxpool.Pool, schema string) error
}{
	{"registry", registrypg.DefaultSchema, registrypg.Migrate},
	{"identity", identitypg.DefaultSchema, identitypg.Migrate},
	{"policy", policypg.DefaultSchema, policypg.Migrate},
	{"dispatch", dispatchpg.DefaultSchema, dispatchpg.Migrate},
	{"audit", auditpg.DefaultSchema, auditpg.Migrate},
}

func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fmgate migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("postgres.url", "", "Postgres URL (required)")
	services := fs.String("services", "all", "services whose schemas to migrate: all, or a comma-separated list of registry, identity, policy, dispatch")
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	if *url == "" {
		return errors.New("--postgres.url (or FMGATE_POSTGRES_URL) is required")
	}
	want := strings.Split(*services, ",")
	pool, err := pg.Connect(ctx, *url)
	if err != nil {
		return err
	}
	defer pool.Close()
	for _, m := range migrations {
		if *services != "all" && !slices.Contains(want, m.service) {
			continue
		}
		if err := m.migrate(ctx, pool, m.schema); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "migrated %s (schema %q)\n", m.service, m.schema)
	}
	return nil
}
