package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tetherproject/tether/internal/atomicfile"
	"github.com/tetherproject/tether/internal/fileowner"
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
// ID) in a folder of the user's that nobody else may write (made 0700),
// written 0600 and atomically (a temporary file renamed over the old one).
// The token is bound to the SVID's leaf certificate: a copied file is worth
// nothing without the SVID's private key.
//
// What is checked, and when (see checkDir and checkFile): prepare, before
// any call to tetherd, and LoadToken and SaveToken each time. The folder
// must be a folder (not a symbolic link: the last element of the path is
// not followed), belong to the user, and not be writable by group or others;
// like ssh with ~/.ssh, a 0750 or 0755 folder is accepted, as its files are
// 0600 and others can neither read nor replace them. A cache file must be a
// regular file (not a symbolic link), belong to the user, and be neither
// readable nor writable by group or others. Anything else is refused with
// exit status 1 and no token is read.
type fileStore struct {
	mu       sync.Mutex
	dir      string
	path     string
	server   string
	spiffeID string
	uid      int // the owner the folder and files must have: os.Getuid()
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
		uid:      os.Getuid(),
	}
}

// cacheFileName is the hex SHA-256 of the server URL and the SPIFFE ID.
func cacheFileName(server string, id spiffeid.ID) string {
	sum := sha256.Sum256([]byte(server + "\x00" + id.String()))
	return hex.EncodeToString(sum[:]) + ".json"
}

// prepare checks the cache before any call to tetherd, so that a command
// fails before it starts a session it could not keep (or reads a token
// someone else could have planted): the folder, made (0700, parents as
// needed) if create and it is missing, and the cache file if there is one.
func (s *fileStore) prepare(create bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if create {
		if err := s.ensureDir(); err != nil {
			return err
		}
	}
	_, err := s.load()
	return err
}

// LoadToken implements client.TokenStore. A missing folder or file, or a
// file that is not JSON, is no token; a folder or file that fails the checks
// is an error, and the file is not read.
func (s *fileStore) LoadToken() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load()
}

func (s *fileStore) load() (string, error) {
	if exists, err := s.checkDir(); err != nil || !exists {
		return "", err
	}
	// Looked at before it is opened (opening a FIFO would block), and again
	// once opened, without following a symbolic link: what is read is what
	// was checked.
	fi, err := os.Lstat(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("token cache: %w", err)
	}
	if err := checkFile(s.path, fi, s.uid); err != nil {
		return "", err
	}
	f, err := fileowner.OpenNoFollow(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("token cache: %w", err)
	}
	defer func() { _ = f.Close() }()
	fi, err = f.Stat()
	if err != nil {
		return "", fmt.Errorf("token cache: %w", err)
	}
	if err := checkFile(s.path, fi, s.uid); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxCacheFile+1))
	if err != nil {
		return "", fmt.Errorf("token cache: %w", err)
	}
	if len(b) > maxCacheFile {
		return oversized, nil // a file no token fits: the client calls it unusable
	}
	var c cacheFile
	if json.Unmarshal(b, &c) != nil {
		return "", nil
	}
	return c.Token, nil
}

// maxCacheFile bounds what is read of a cache file: ours hold a token of at
// most 4 KiB in a small JSON object.
const maxCacheFile = 64 << 10

// oversized is what LoadToken returns for a cache file over maxCacheFile:
// a string no token can be (client.UsableToken refuses it), so the client
// treats the file as holding no usable session, as for a token too long.
const oversized = "\x00oversized"

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
	if err := atomicfile.Write(s.path, b, 0o600); err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	return nil
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

// ensureDir makes the cache folder 0700 (and its missing parents) if it is
// not there, and checks it.
func (s *fileStore) ensureDir() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return failf("cannot make the token cache folder %s: %v (set %s to another folder)", s.dir, unwrapPath(err), envCacheDir)
	}
	_, err := s.checkDir()
	return err
}

// checkDir checks the cache folder, if it exists.
func (s *fileStore) checkDir() (exists bool, err error) {
	fi, err := os.Lstat(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, failf("cannot use the token cache folder %s: %v (set %s to another folder)", s.dir, unwrapPath(err), envCacheDir)
	}
	return true, checkDir(s.dir, fi, s.uid)
}

// checkDir refuses a cache folder that someone else could write into
// (replacing a cache file, or planting one): it must be a folder, not a
// symbolic link to one, belong to uid and not be writable by group or
// others. fi is from Lstat.
func checkDir(dir string, fi fs.FileInfo, uid int) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return failf("the token cache folder %s is a symbolic link: set %s to the folder itself, or remove the link", dir, envCacheDir)
	case !fi.IsDir():
		return failf("the token cache folder %s is not a folder: remove it, or set %s to another folder", dir, envCacheDir)
	}
	owner, ok := fileowner.Of(fi)
	if !ok {
		return nil // no owner or Unix modes to check (Windows)
	}
	if owner != uid {
		return failf("the token cache folder %s belongs to uid %d, not to you (uid %d): set %s to a folder of your own", dir, owner, uid, envCacheDir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return failf("the token cache folder %s is writable by other users (mode %04o): chmod 700 %s, or set %s", dir, perm, dir, envCacheDir)
	}
	return nil
}

// checkFile refuses a cache file that someone else could have written, or
// could read: it must be a regular file of uid's with no group or other
// permissions. fi is from Lstat, or Stat of the opened file.
func checkFile(path string, fi fs.FileInfo, uid int) error {
	if fi.Mode()&fs.ModeSymlink != 0 {
		return failf("the token cache file %s is a symbolic link: remove it (rm %s) and run 'tether login'", path, path)
	}
	if !fi.Mode().IsRegular() {
		return failf("the token cache file %s is not a regular file: remove it (rm %s) and run 'tether login'", path, path)
	}
	owner, ok := fileowner.Of(fi)
	if !ok {
		return nil
	}
	if owner != uid {
		return failf("the token cache file %s belongs to uid %d, not to you (uid %d): remove it (rm %s) and run 'tether login'", path, owner, uid, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return failf("the token cache file %s is open to other users (mode %04o): chmod 600 %s", path, perm, path)
	}
	return nil
}

// unwrapPath drops the operation and path of a *fs.PathError, which the
// message names already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// String never shows the token.
func (s *fileStore) String() string { return "token cache " + s.path }
