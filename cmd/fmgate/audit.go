package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/fmgate/fmgate/internal/audit"
	"github.com/fmgate/fmgate/internal/audit/auditpg"
	"github.com/fmgate/fmgate/internal/config"
	"github.com/fmgate/fmgate/internal/pg"
)

const auditUsage = `Usage:
  fmgate audit list    [flags]   print matching records, one line each
  fmgate audit export  [flags]   print matching records as JSON lines
  fmgate audit verify  [flags]   check the hash chain of one organization and service

Run "fmgate audit <command> -h" for the flags.
`

// errChainBroken ends `fmgate audit verify` with exit status 1 once the break is printed.
var errChainBroken = errors.New("audit chain broken")

func auditCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return errors.New("audit: a command is required")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "list", "export", "verify":
	case "help", "-h", "--help":
		_, err := fmt.Fprint(stdout, auditUsage)
		return err
	default:
		fmt.Fprint(stderr, auditUsage)
		return fmt.Errorf("audit: unknown command %q", sub)
	}

	fs := flag.NewFlagSet("fmgate audit "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("postgres.url", "", "Postgres URL (required)")
	schema := fs.String("audit.schema", auditpg.DefaultSchema, "schema of the audit tables")
	org := fs.String("organization", "", "organization whose records to read (required)")
	service := fs.String("service", "", "service whose chain to read (required for verify)")
	var action, actor, since, until *string
	var limit *int
	if sub != "verify" {
		action = fs.String("action", "", `only records of this action ("policy.update", "generation")`)
		actor = fs.String("actor", "", "only records of this actor subject")
		since = fs.String("since", "", "only records at or after this time (RFC 3339)")
		until = fs.String("until", "", "only records before this time (RFC 3339)")
		limit = fs.Int("limit", 0, "print at most this many records (0: all)")
	}
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	var errs []error
	if *url == "" {
		errs = append(errs, errors.New("--postgres.url (or FMGATE_POSTGRES_URL) is required"))
	}
	if *org == "" {
		errs = append(errs, errors.New("--organization is required"))
	}
	if sub == "verify" && *service == "" {
		errs = append(errs, errors.New("--service is required: each service keeps its own chain"))
	}
	f := audit.Filter{OrganizationID: *org, Service: *service}
	if sub != "verify" {
		f.Action, f.ActorSubject = *action, *actor
		var err error
		if f.From, err = parseTime("since", *since); err != nil {
			errs = append(errs, err)
		}
		if f.To, err = parseTime("until", *until); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	pool, err := pg.Connect(ctx, *url)
	if err != nil {
		return err
	}
	defer pool.Close()
	store := auditpg.New(pool, *schema)

	if sub == "verify" {
		v, err := store.Verify(ctx, *org, *service)
		if err != nil {
			return err
		}
		if !v.OK() {
			fmt.Fprintf(stdout, "chain %s/%s broken at record %d: %s (%d records before it verify)\n",
				*org, *service, v.Broken, v.Reason, v.Records)
			return errChainBroken
		}
		_, err = fmt.Fprintf(stdout, "chain ok (%d records, head %d sha256:%s)\n", v.Records, v.HeadSequence, v.HeadHash)
		return err
	}

	enc := json.NewEncoder(stdout)
	printed, token := 0, ""
	for {
		page, next, err := store.List(ctx, f, audit.Page{Size: audit.MaxPageSize, Token: token})
		if err != nil {
			return err
		}
		for _, e := range page {
			if *limit > 0 && printed == *limit {
				return nil
			}
			if sub == "export" {
				err = enc.Encode(e)
			} else {
				err = printLine(stdout, e)
			}
			if err != nil {
				return err
			}
			printed++
		}
		if next == "" {
			return nil
		}
		token = next
	}
}

func parseTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s: want an RFC 3339 time such as 2026-01-02T15:04:05Z", name)
	}
	return t, nil
}

// printLine writes e for a person: time, chain position, action, actor, resource, trace.
func printLine(w io.Writer, e audit.Event) error {
	line := fmt.Sprintf("%s  %s #%d  %s  %s:%s", e.Time.Format("2006-01-02T15:04:05.000000Z"),
		e.Service, e.Sequence, e.Action, e.Actor.Kind, e.Actor.Subject)
	if e.Resource.Type != "" || e.Resource.ID != "" {
		line += fmt.Sprintf("  %s/%s", e.Resource.Type, e.Resource.ID)
	}
	if e.TraceID != "" {
		line += "  trace=" + e.TraceID
	}
	_, err := fmt.Fprintln(w, line)
	return err
}
