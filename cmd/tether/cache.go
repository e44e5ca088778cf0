package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tetherproject/tether/pkg/client"
)

// cacheDir is where tokens are cached: $TETHER_CACHE_DIR, else
// $XDG_RUNTIME_DIR/tether, else ~/.cache/tether.
func cacheDir(getenv func(string) string) (string, error) {
	if d := getenv(envCacheDir); d != "" {
		return d, nil
	}
	if d := getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "tether"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", failf("no folder for the token cache: set %s (%v)", envCacheDir, err)
	}
	return filepath.Join(home, ".cache", "tether"), nil
}

// fileStore is the CLI's client.TokenStore: one file per (server, own SPIFFE
// ID) in a folder only the user may enter (0700), written 0600 and
// atomically (a temporary file renamed over the old one). The token is bound
// to the SVID's leaf certificate: a copied file is worth nothing without the
// SVID's private key.
type fileStore struct {
	mu       sync.Mutex
	dir      string
	path     string
	server   string
	spiffeID string
}

var _ client.TokenStore = (*fileStore)(nil)

// cacheFile is the content of a cache file. Server and SPIFFEID are there
// for people who look; tether trusts neither (tetherd checks the token).
type cacheFile struct {
	Server   string `json:"server"`
	SPIFFEID string `json:"spiffe_id"`
	Token    string `json:"token"`
}

func newFileStore(dir, server string, id spiffeid.ID) *fileStore {
	return &fileStore{
		dir:      dir,
		path:     filepath.Join(dir, cacheFileName(server, id)),
		server:   server,
		spiffeID: id.String(),
	}
}

// cacheFileName is the hex SHA-256 of the server URL and the SPIFFE ID.
func cacheFileName(server string, id spiffeid.ID) string {
	sum := sha256.Sum256([]byte(server + "\x00" + id.String()))
	return hex.EncodeToString(sum[:]) + ".json"
}

// LoadToken implements client.TokenStore. A missing or unreadable-as-JSON
// file is no token.
func (s *fileStore) LoadToken() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("token cache: %w", err)
	}
	var f cacheFile
	if json.Unmarshal(b, &f) != nil {
		return "", nil
	}
	return f.Token, nil
}

// SaveToken implements client.TokenStore.
func (s *fileStore) SaveToken(token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureDir(); err != nil {
		return err
	}
	b, err := json.Marshal(cacheFile{Server: s.server, SPIFFEID: s.spiffeID, Token: token})
	if err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	tmp, err := os.CreateTemp(s.dir, ".tether-*.tmp") // created 0600
	if err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	err = errors.Join(tmp.Chmod(0o600), write(tmp, b), tmp.Sync(), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), s.path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("token cache: %w", err)
	}
	return nil
}

func write(f *os.File, b []byte) error {
	_, err := f.Write(b)
	return err
}

// DeleteToken implements client.TokenStore.
func (s *fileStore) DeleteToken() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("token cache: %w", err)
	}
	return nil
}

// ensureDir makes the cache folder 0700, and refuses one that others may
// enter: they could read or replace the cache files.
func (s *fileStore) ensureDir() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	fi, err := os.Stat(s.dir)
	if err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return failf("the token cache folder %s is open to other users (mode %04o): chmod 700 it, or set %s", s.dir, fi.Mode().Perm(), envCacheDir)
	}
	return nil
}

// String never shows the token.
func (s *fileStore) String() string { return "token cache " + s.path }
