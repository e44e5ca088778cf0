package cli

import "runtime/debug"

// version is set at build time:
//
//	go build -ldflags "-X github.com/tetherproject/tether/internal/cli.version=v1.2.3" ./cmd/...
var version = ""

// Version is the version both commands print and tetherd logs: the one set
// at build time, else the module version recorded in the binary, else
// "devel-" and the VCS revision it was built from ("-dirty" if modified),
// else "devel".
func Version() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel-" + rev
}
