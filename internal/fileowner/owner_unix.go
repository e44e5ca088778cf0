//go:build unix

package fileowner

import (
	"io/fs"
	"os"
	"syscall"
)

// Of is the uid that owns the file fi describes.
func Of(fi fs.FileInfo) (uid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// OpenNoFollow opens path for reading, refusing a symbolic link.
func OpenNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0) //nolint:gosec // G304: callers name their own files and check them
}
