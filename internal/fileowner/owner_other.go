//go:build !unix

package fileowner

import (
	"io/fs"
	"os"
)

// Of reports no owner: Unix owners and modes do not apply (Windows guards a
// user's files with ACLs).
func Of(fs.FileInfo) (uid int, ok bool) { return 0, false }

// OpenNoFollow opens path for reading; callers refuse a symbolic link
// before.
func OpenNoFollow(path string) (*os.File, error) { return os.Open(path) }
