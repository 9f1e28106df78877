// Command fmgate runs the fmgate services (all in one process, or any subset of them in a
// mesh), applies database migrations, and runs the provider simulator.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "fmgate:", err)
		}
		os.Exit(1)
	}
}

const usage = `fmgate: a governed gateway to foundation models.

Usage:
  fmgate serve     [flags]   run services (all by default; see --services)
  fmgate migrate   [flags]   apply the Postgres migrations (registry, identity, policy, dispatch, audit)
  fmgate simulate  [flags]   run the provider simulator
  fmgate audit     <cmd> [flags]   list, export (JSON lines) or verify the audit trail
  fmgate apply     -f FILE [--dry-run]   create or update every resource of FILE through the admin API
  fmgate keys      create|list|get|revoke      administer API keys
  fmgate models    list|get|transition         administer models
  fmgate policies  list|get                    read policies
  fmgate explain   --principal P --model M     which policies fire for a principal and model, and why
  fmgate licenses  accept|list                 accept model licences for teams
  fmgate version             print the version

Every flag can also be set through the environment: --postgres.url reads FMGATE_POSTGRES_URL.
The admin commands (apply, keys, models, policies, explain, licenses) call --server with the
credential in FMGATE_TOKEN or --token-file.
Run "fmgate <command> -h" for the flags of a command.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, stdout, stderr)
	case "migrate":
		return migrate(ctx, args, stdout, stderr)
	case "audit":
		return auditCmd(ctx, args, stdout, stderr)
	case "apply":
		return applyCmd(ctx, args, stdout, stderr)
	case "keys", "models", "policies", "explain", "licenses":
		return adminCmd(ctx, cmd, args, stdout, stderr)
	case "simulate":
		return simulate(ctx, args, stdout, stderr)
	case "version":
		_, err := fmt.Fprintln(stdout, "fmgate", version)
		return err
	case "help", "-h", "--help":
		_, err := fmt.Fprint(stdout, usage)
		return err
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
