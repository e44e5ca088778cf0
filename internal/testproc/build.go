package testproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Build compiles the main packages pkgs (as the go command names them) into
// the folder dir, each binary named after its package's folder, with the
// race detector if race is set. A failed build's error holds the go
// command's output.
func Build(ctx context.Context, dir string, race bool, pkgs ...string) error {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if race {
		args = append(args, "-race")
	}
	args = append(args, pkgs...)
	p, err := Start(Config{Name: "go build", Path: "go", Args: args})
	if err != nil {
		return err
	}
	if _, err = p.WaitExit(ctx); err != nil {
		err = errors.Join(err, p.Kill())
	} else {
		err = p.WaitErr()
	}
	if err != nil {
		return fmt.Errorf("testproc: go %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(p.Stderr()+p.Stdout()))
	}
	return nil
}

// BuildTemp is Build into a new temporary folder, for a TestMain that builds
// the binaries its tests run: it returns the folder and a function that
// removes it.
func BuildTemp(race bool, pkgs ...string) (dir string, remove func(), err error) {
	dir, err = os.MkdirTemp("", "testproc-bin-")
	if err != nil {
		return "", nil, fmt.Errorf("testproc: %w", err)
	}
	remove = func() { _ = os.RemoveAll(dir) }
	if err := Build(context.Background(), dir, race, pkgs...); err != nil {
		remove()
		return "", nil, err
	}
	return dir, remove, nil
}

// CacheDir is where the project's scripts build the tools its tests run
// (scripts/spire-build, scripts/etcd-build):
// ${XDG_CACHE_HOME:-$HOME/.cache}/tether-build/ELEM…, apart from the CLI's
// token cache (~/.cache/tether).
func CacheDir(elem ...string) string {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(append([]string{cache, "tether-build"}, elem...)...)
}
