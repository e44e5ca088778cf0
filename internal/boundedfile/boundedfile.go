package boundedfile

import (
	"fmt"
	"io"
	"os"
)

// MaxPEM bounds a PEM file of certificates, keys or a trust bundle: a few
// kilobytes in practice, and 4 MiB holds thousands of certificates.
const MaxPEM = 4 << 20

// Read returns the content of the file at path, or an error if it is larger
// than limit bytes (the error says so, naming the file and the bound). It
// reads at most limit+1 bytes, whatever the file is (a device, a pipe).
func Read(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // G304: the paths are the caller's, named by the operator or the user
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %s: not a file of this kind", path, size(limit))
	}
	return b, nil
}

// size writes n bytes in the largest whole unit.
func size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
