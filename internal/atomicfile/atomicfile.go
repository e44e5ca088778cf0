package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write writes data to path with permissions perm, atomically. The data goes
// to a new temporary file in path's folder (a fresh name opened with O_EXCL,
// so nothing already there is followed or reused); once the data is in, the
// file gets perm exactly (the umask does not apply), is synced to disk and
// closed, and is then renamed over path. On any failure the temporary file is
// removed and path is left as it was.
//
// After the rename the folder is synced too, so that the rename itself
// survives a crash; that is best effort, as some file systems refuse to sync
// a folder and by then the new file is in place.
func Write(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	// CreateTemp opens with O_EXCL and mode 0600: until the data is in and
	// perm set, nobody else can open it, whatever perm is.
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	err = errors.Join(write(tmp, data), tmp.Chmod(perm), tmp.Sync(), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	syncDir(dir)
	return nil
}

func write(f *os.File, data []byte) error {
	_, err := f.Write(data)
	return err
}

// syncDir makes a rename in dir durable where the system can sync a folder
// (Windows cannot; its error is ignored like any other here).
func syncDir(dir string) {
	d, err := os.Open(dir) //nolint:gosec // G304: the folder of the caller's own file, opened only to sync it
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
