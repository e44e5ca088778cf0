//go:build !unix

package main

import (
	"io/fs"
	"os"
)

// ownerOf reports no owner: Unix owners and modes do not apply (Windows
// guards a user's files with ACLs), so checkDir and checkFile check only the
// kind of file.
func ownerOf(fs.FileInfo) (uid int, ok bool) { return 0, false }

// openNoFollow opens path for reading; the caller has refused a symbolic
// link already.
func openNoFollow(path string) (*os.File, error) { return os.Open(path) }
