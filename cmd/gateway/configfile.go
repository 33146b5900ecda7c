package main

import (
	"bytes"
	"fmt"
	"io"
	"net/url"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/goccy/go-yaml"
)

// The configuration file (--config feedgate.yaml) is a flat YAML map whose
// keys are the long flag names (`listen`, `redis-url`, `log-format`...), so
// every flag, including those added later, has a key without further work.
// A value on the command line wins over the environment (FEEDGATE_*), which
// wins over the file, which wins over the flag's default.

// yamlConfig is a kong resolver over the parsed file.
type yamlConfig struct {
	values map[string]any
}

// loadYAMLConfig is the kong.ConfigurationLoader of --config.
func loadYAMLConfig(r io.Reader) (kong.Resolver, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	values := map[string]any{}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := yaml.Unmarshal(data, &values); err != nil {
			return nil, fmt.Errorf("the configuration file is not a YAML map of flag names to values: %w", err)
		}
	}
	return &yamlConfig{values: values}, nil
}

// Validate refuses keys that are no flag of any command, so a typo does not
// go unnoticed.
func (y *yamlConfig) Validate(app *kong.Application) error {
	known := map[string]bool{}
	kong.Visit(app.Node, func(v kong.Visitable, next kong.Next) error {
		if n, ok := v.(*kong.Node); ok {
			for _, f := range n.Flags {
				known[f.Name] = true
			}
		}
		return next(nil)
	})
	var unknown []string
	for k := range y.values {
		if !known[k] || k == "config" || k == "help" || k == "version" {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	msgs := make([]string, len(unknown))
	for i, k := range unknown {
		msgs[i] = fmt.Sprintf("%q", k)
		if s := closest(k, names); s != "" {
			msgs[i] += fmt.Sprintf(" (did you mean %q?)", s)
		}
	}
	return fmt.Errorf("configuration file: unknown key %s; keys are the long flag names of `gateway serve --help`", strings.Join(msgs, ", "))
}

// Resolve gives the file's value of flag unless an environment variable of
// the flag is set (the environment overrides the file; kong has already
// applied it).
func (y *yamlConfig) Resolve(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	raw, ok := y.values[flag.Name]
	if !ok || raw == nil {
		return nil, nil
	}
	for _, env := range flag.Envs {
		if _, set := lookupEnv(env); set {
			return nil, nil
		}
	}
	return flagText(flag.Name, raw)
}

// flagText turns a YAML value into the text the flag would take on the
// command line; lists become comma-separated.
func flagText(name string, raw any) (string, error) {
	switch v := raw.(type) {
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			s, err := flagText(name, e)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	case map[string]any:
		return "", fmt.Errorf("configuration file: %s is a map; give a single value or a list", name)
	case string:
		return v, nil
	default:
		return fmt.Sprint(v), nil
	}
}

// ConfigCmd is `gateway config`.
type ConfigCmd struct {
	Check ConfigCheckCmd `cmd:"" help:"Validate the configuration (file, environment, flags) and print the effective configuration of serve, secrets masked."`
}

// ConfigCheckCmd takes every flag of serve and prints the values serve
// would run with, as a configuration file (with where each value came from).
type ConfigCheckCmd struct {
	ServeCmd
}

// Run prints the effective configuration.
func (c *ConfigCheckCmd) Run(kctx *kong.Context) error {
	if _, err := c.publicURL(); err != nil {
		return err
	}
	out, err := effectiveConfig(kctx)
	if err != nil {
		return err
	}
	_, err = kctx.Stdout.Write(out)
	return err
}

// effectiveConfig renders the flags of the selected command as YAML, one
// key per flag, with a comment naming the source of values not defaulted.
func effectiveConfig(kctx *kong.Context) ([]byte, error) {
	fromArgs := map[*kong.Flag]bool{}
	fromFile := map[*kong.Flag]bool{}
	for _, p := range kctx.Path {
		if p.Flag != nil {
			if p.Resolved {
				fromFile[p.Flag] = true
			} else {
				fromArgs[p.Flag] = true
			}
		}
	}
	var b bytes.Buffer
	b.WriteString("# effective configuration of `gateway serve`; secrets masked\n")
	flags := kctx.Flags()
	sort.SliceStable(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	for _, f := range flags {
		if f.Name == "help" || f.Name == "version" || f.Name == "config" || !f.Target.IsValid() {
			continue
		}
		v := plain(f.Target)
		if isSecret(f) {
			v = mask(v)
		} else {
			v = maskURLPasswords(v)
		}
		line, err := yaml.MarshalWithOptions(map[string]any{f.Name: v}, yaml.Flow(false))
		if err != nil {
			return nil, err
		}
		src := ""
		switch {
		case fromArgs[f]:
			src = "flag"
		case fromFile[f]:
			src = "file"
		case envSet(f):
			src = "env " + strings.Join(f.Envs, ",")
		}
		text := strings.TrimRight(string(line), "\n")
		if src != "" {
			if i := strings.IndexByte(text, '\n'); i >= 0 {
				text = text[:i] + " # " + src + text[i:]
			} else {
				text += " # " + src
			}
		}
		b.WriteString(text + "\n")
	}
	return b.Bytes(), nil
}

// plain converts a flag's target to a value YAML renders as the flag
// would take it back (durations as "30s").
func plain(v reflect.Value) any {
	switch x := v.Interface().(type) {
	case time.Duration:
		return x.String()
	case fmt.Stringer:
		return x.String()
	}
	if v.Kind() == reflect.Slice {
		out := make([]any, v.Len())
		for i := range out {
			out[i] = plain(v.Index(i))
		}
		return out
	}
	return v.Interface()
}

// isSecret reports whether a flag holds a secret: tagged `secret:""`, or
// named like one (so flags added later are masked without a tag too).
func isSecret(f *kong.Flag) bool {
	if f.Tag != nil && f.Tag.Has("secret") {
		return true
	}
	for _, w := range []string{"secret", "password", "token", "credential"} {
		if strings.Contains(f.Name, w) {
			return true
		}
	}
	return false
}

func mask(v any) any {
	switch x := v.(type) {
	case string:
		if x == "" {
			return ""
		}
		return "********"
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = mask(x[i])
		}
		return out
	}
	return v
}

// maskURLPasswords hides the password of URLs (redis://:pw@host/0).
func maskURLPasswords(v any) any {
	switch x := v.(type) {
	case string:
		u, err := url.Parse(x)
		if err != nil || u.User == nil {
			return x
		}
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return strings.Replace(u.String(), "xxxxx", "********", 1)
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = maskURLPasswords(x[i])
		}
		return out
	}
	return v
}

func envSet(f *kong.Flag) bool {
	return slices.ContainsFunc(f.Envs, func(e string) bool { _, ok := lookupEnv(e); return ok })
}

// closest returns the known name nearest to s, if it is close.
func closest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var lookupEnv = os.LookupEnv

// Validate checks what kong's types and enums cannot, for serve and for
// config check alike (kong calls it after parsing).
func (c *ServeCmd) Validate() error {
	var errs []string
	if c.Retention < 1 {
		errs = append(errs, fmt.Sprintf("retention must be at least 1 (got %d)", c.Retention))
	}
	if c.MaxCount < 1 {
		errs = append(errs, fmt.Sprintf("max-count must be at least 1 (got %d)", c.MaxCount))
	}
	if c.RetrieveCache < 0 || c.RetrieveCacheMiB < 1 {
		errs = append(errs, fmt.Sprintf("retrieve-cache must be 0 (off) or more and retrieve-cache-mib at least 1 (got %d and %d)", c.RetrieveCache, c.RetrieveCacheMiB))
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Sprintf("public-url %q must be an absolute http:// or https:// URL", c.PublicURL))
		}
	}
	if _, err := c.publicURL(); err != nil {
		errs = append(errs, err.Error())
	}
	if err := c.TLSConfig.validate(); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
