// Package config reads command-line flags with FMGATE_* environment overlays: a flag given
// on the command line wins, otherwise FMGATE_<FLAG> (upper case, "." and "-" as "_") sets
// it, otherwise its default stands. `--postgres.url` reads FMGATE_POSTGRES_URL.
package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// EnvName is the environment variable that overlays a flag.
func EnvName(flagName string) string {
	return "FMGATE_" + strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(flagName))
}

// Parse parses args into fs, then applies the environment to every flag the arguments did
// not set. lookup is os.LookupEnv outside tests.
func Parse(fs *flag.FlagSet, args []string, lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		name := EnvName(f.Name)
		if v, ok := lookup(name); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	return errors.Join(errs...)
}

// Redact hides the password of a URL-shaped secret for logging ("postgres://u:***@h/db").
func Redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		if url == "" {
			return ""
		}
		return "***"
	}
	userinfo, host, ok := strings.Cut(rest, "@")
	if !ok {
		return url
	}
	user, _, hasPass := strings.Cut(userinfo, ":")
	if !hasPass {
		return url
	}
	return scheme + "://" + user + ":***@" + host
}
