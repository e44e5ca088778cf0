package boundedfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.pem")
	require.NoError(t, os.WriteFile(path, []byte("0123456789"), 0o600))

	b, err := Read(path, 10)
	require.NoError(t, err)
	require.Equal(t, "0123456789", string(b), "a file of exactly the bound")

	_, err = Read(path, 9)
	require.ErrorContains(t, err, path)
	require.ErrorContains(t, err, "larger than 9 bytes")

	_, err = Read(filepath.Join(dir, "missing"), 10)
	require.True(t, errors.Is(err, fs.ErrNotExist), "the open error stays an fs error: %v", err)
}

// TestReadEndlessFile: a device that never ends is refused after the bound,
// not read until memory runs out.
func TestReadEndlessFile(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero here")
	}
	_, err := Read("/dev/zero", MaxPEM)
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "/dev/zero is larger than 4 MiB"), err.Error())
}
