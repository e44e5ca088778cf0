package main

// Settings the way SPIRE operators write them: every flag also has a
// TETHERD_<FLAG> environment variable and a key in an HCL file (--config,
// the format of SPIRE's and spiffe-helper's own files), under the command
// line: flag > variable > file > default.

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/parser"
	hclstrconv "github.com/hashicorp/hcl/hcl/strconv"
	"github.com/hashicorp/hcl/hcl/token"
	"github.com/spf13/pflag"

	"github.com/tetherproject/tether/internal/boundedfile"
)

const (
	// envPrefix begins every flag's variable: --max-sessions is
	// TETHERD_MAX_SESSIONS.
	envPrefix = "TETHERD_"
	// envConfig names the settings file when --config is not given.
	envConfig = envPrefix + "CONFIG"

	// annotationSecret marks a flag whose value is a secret: tetherd.config
	// logs it as redacted. No flag is one today (tetherd's keys come from
	// its identity source, never from its settings); a flag that ever takes
	// a secret must carry it.
	annotationSecret = "tetherd/secret"
	redacted         = "*** REDACTED ***"
)

// Where a setting came from.
const (
	fromFlag = "flag"
	fromEnv  = "env"
	fromFile = "file"
)

// notSettings are flags that are no settings: no variable, no file key.
var notSettings = map[string]bool{"help": true, "version": true, "config": true}

// settings says where the settings that are not defaults came from.
type settings struct {
	file       string            // the settings file, "" if none
	from       map[string]string // flag name → fromFlag, fromEnv or fromFile
	line       map[string]int    // flag name → its line in the file, for fromFile
	ignoredEnv []string          // TETHERD_ variables that name no flag
}

// name is how an error names the setting of flag, where its value came
// from, in the shapes of loadSettings' own errors: "--flag" from the
// command line (or when not given at all), "TETHERD_FLAG" from a variable,
// "FILE:LINE: flag_key" from the settings file. st may be nil (no
// settings loaded: the command line is all there is).
func (st *settings) name(flag string) string {
	if st != nil {
		switch st.from[flag] {
		case fromEnv:
			return envName(flag)
		case fromFile:
			return fmt.Sprintf("%s:%d: %s", st.file, st.line[flag], fileKey(flag))
		}
	}
	return "--" + flag
}

// envName is the variable of a flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// fileKey is the settings file's key of a flag.
func fileKey(flag string) string { return strings.ReplaceAll(flag, "-", "_") }

// loadSettings gives the flags of fs that the command line did not set
// their TETHERD_<FLAG> variable's value from environ ("NAME=value", as
// os.Environ returns it), else the value of their key in the HCL file
// named by --config or TETHERD_CONFIG. A repeatable flag takes a list in
// the file (admin = ["a", "b"]) and a comma-separated value in its variable
// (the role flags split theirs their own way: see roleFlag).
// An empty variable counts as unset. Unknown TETHERD_ variables are
// ignored, not refused: Kubernetes gives a pod one per service named
// tetherd (TETHERD_SERVICE_HOST, TETHERD_PORT, ...); they are listed in
// tetherd.config. Every error is a usage error naming the variable, or the
// file, line and key.
//
// tetherd (serving) calls it once the command line is parsed; any command
// with tetherd's flags can.
func loadSettings(fs *pflag.FlagSet, environ []string) (*settings, error) {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, envPrefix) {
			env[k] = v
		}
	}
	st := &settings{from: map[string]string{}, line: map[string]int{}}
	fs.Visit(func(f *pflag.Flag) { st.from[f.Name] = fromFlag })

	known := map[string]bool{envConfig: true}
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if notSettings[f.Name] {
			return
		}
		name := envName(f.Name)
		known[name] = true
		v := env[name]
		if err != nil || f.Changed || v == "" {
			return
		}
		if e := set(fs, f, splitList(f, v)); e != nil {
			err = usagef("%s: %v", name, e)
			return
		}
		st.from[f.Name] = fromEnv
	})
	if err != nil {
		return nil, err
	}
	for k := range env {
		if !known[k] {
			st.ignoredEnv = append(st.ignoredEnv, k)
		}
	}
	sort.Strings(st.ignoredEnv)

	if f := fs.Lookup("config"); f != nil && f.Changed {
		st.file = f.Value.String()
	} else {
		st.file = env[envConfig]
	}
	if st.file == "" {
		return st, nil
	}
	items, err := readSettingsFile(st.file)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		name := strings.ReplaceAll(it.key, "_", "-")
		f := fs.Lookup(name)
		if f == nil || notSettings[name] || strings.Contains(it.key, "-") {
			return nil, usagef("%s:%d: unknown setting %q: the keys are the flags' names with _, as in max_sessions = 100", st.file, it.line, it.key)
		}
		if it.list && !isList(f) {
			return nil, usagef("%s:%d: %s: one value, not a list", st.file, it.line, it.key)
		}
		if f.Changed { // the command line or a variable set it
			continue
		}
		if err := set(fs, f, it.values); err != nil {
			return nil, usagef("%s:%d: %s: %v", st.file, it.line, it.key, err)
		}
		st.from[f.Name] = fromFile
		st.line[f.Name] = it.line
	}
	return st, nil
}

// isList says whether f is repeatable.
func isList(f *pflag.Flag) bool {
	_, ok := f.Value.(pflag.SliceValue)
	return ok
}

// envSplitter is a repeatable flag whose variable is not split at every
// comma (the role flags: a role's patterns are comma-separated too).
type envSplitter interface {
	splitEnv(v string) []string
}

// splitList is v, split at commas if f is repeatable (as f says, if it
// splits its variable its own way).
func splitList(f *pflag.Flag, v string) []string {
	if s, ok := f.Value.(envSplitter); ok {
		return s.splitEnv(v)
	}
	if !isList(f) {
		return []string{v}
	}
	var out []string
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// set gives f its values as the command line would (marking it changed),
// each one in turn for a repeatable flag.
func set(fs *pflag.FlagSet, f *pflag.Flag, values []string) error {
	for _, v := range values {
		if err := fs.Set(f.Name, v); err != nil {
			return err
		}
	}
	return nil
}

// fileItem is one setting of the file.
type fileItem struct {
	key    string
	line   int
	values []string
	list   bool
}

// maxSettingsFile bounds the --config file: a setting per flag is a few
// kilobytes at most.
const maxSettingsFile = 1 << 20

// readSettingsFile reads the HCL file at path: key = value lines, where a
// value is a string, a number, a boolean or a list of those. A key given
// twice, a block, or anything that is not HCL is an error naming the file.
func readSettingsFile(path string) (items []fileItem, err error) {
	b, err := boundedfile.Read(path, maxSettingsFile)
	if err != nil {
		return nil, usagef("--config: %v", err)
	}
	defer func() {
		// hcl v1 panics on a few malformed values (its Token.Value); a bad
		// file is the operator's mistake, not a crash.
		if r := recover(); r != nil {
			items, err = nil, usagef("--config %s: not HCL that tetherd can read: %v", path, r)
		}
	}()
	// A key given twice is refused below, naming its line as every other
	// error does (the parser's own refusal names no file).
	f, err := parser.ParseDontErrorOnDuplicateKeys(b)
	if err != nil {
		var pe *parser.PosError
		if errors.As(err, &pe) {
			return nil, usagef("%s:%d: %v", path, pe.Pos.Line, pe.Err)
		}
		return nil, usagef("--config %s: %v", path, err)
	}
	list, ok := f.Node.(*ast.ObjectList)
	if !ok {
		return nil, usagef("--config %s: not a list of settings", path)
	}
	seen := make(map[string]int, len(list.Items)) // key: its line
	for _, item := range list.Items {
		line := item.Pos().Line
		if len(item.Keys) != 1 {
			return nil, usagef("%s:%d: a block is not a setting: write key = value", path, line)
		}
		key, err := keyText(item.Keys[0].Token)
		if err != nil {
			return nil, usagef("%s:%d: %v", path, line, err)
		}
		if first, ok := seen[key]; ok {
			return nil, usagef("%s:%d: %s: given twice (first on line %d)", path, line, key, first)
		}
		seen[key] = line
		it := fileItem{key: key, line: line}
		switch v := item.Val.(type) {
		case *ast.LiteralType:
			s, err := literal(v.Token)
			if err != nil {
				return nil, usagef("%s:%d: %s: %v", path, line, key, err)
			}
			it.values = []string{s}
		case *ast.ListType:
			it.list = true
			for _, e := range v.List {
				lit, ok := e.(*ast.LiteralType)
				if !ok {
					return nil, usagef("%s:%d: %s: a list of strings, numbers or booleans only", path, line, key)
				}
				s, err := literal(lit.Token)
				if err != nil {
					return nil, usagef("%s:%d: %s: %v", path, line, key, err)
				}
				it.values = append(it.values, s)
			}
		default:
			return nil, usagef("%s:%d: %s: a block is not a setting: write %s = value", path, line, key, key)
		}
		items = append(items, it)
	}
	return items, nil
}

func keyText(t token.Token) (string, error) {
	switch t.Type {
	case token.IDENT:
		return t.Text, nil
	case token.STRING:
		return hclstrconv.Unquote(t.Text)
	default:
		return "", fmt.Errorf("%q is not a key", t.Text)
	}
}

// literal is a value as the command line would give it: a string's
// content, a number or boolean as written, a heredoc's lines.
func literal(t token.Token) (string, error) {
	switch t.Type {
	case token.STRING:
		return hclstrconv.Unquote(t.Text)
	case token.HEREDOC:
		// Without the newline that ends the last line: a value, not a file.
		s, _ := t.Value().(string)
		return strings.TrimSuffix(s, "\n"), nil
	case token.NUMBER, token.FLOAT, token.BOOL:
		return t.Text, nil
	default:
		return "", fmt.Errorf("%s is not a value (quote strings)", t.Text)
	}
}

// logConfig logs tetherd.config: every setting that is not a default, with
// where it came from (flag, env or file; a secret redacted), the settings
// file, and the TETHERD_ variables that name no flag. st is nil when
// loadSettings did not run: the command line is then all there is.
func logConfig(log *slog.Logger, fs *pflag.FlagSet, st *settings, workloadAPIDefault bool) {
	var given []any
	fs.VisitAll(func(f *pflag.Flag) {
		if notSettings[f.Name] {
			return
		}
		from := fromFlag
		if st != nil {
			from = st.from[f.Name]
		}
		switch {
		case f.Changed:
		case f.Name == "workload-api" && workloadAPIDefault:
			from = "SPIFFE_ENDPOINT_SOCKET"
		default:
			return
		}
		var value any = f.Value.String()
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			value = sv.GetSlice()
		}
		if _, secret := f.Annotations[annotationSecret]; secret {
			value = redacted
		}
		given = append(given, slog.Group(fileKey(f.Name), slog.Any("value", value), slog.String("from", from)))
	})
	attrs := []any{slog.Group("settings", given...)}
	if st != nil && st.file != "" {
		attrs = append(attrs, slog.String("config_file", st.file))
	}
	if st != nil && len(st.ignoredEnv) > 0 {
		attrs = append(attrs, slog.Any("ignored_env", st.ignoredEnv))
	}
	log.Info("tetherd.config", attrs...)
}
