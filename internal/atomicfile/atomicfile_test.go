package atomicfile_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/atomicfile"
)

// onlyEntry is the one name in dir: no temporary file is left behind.
func onlyEntry(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file is left behind")
	return entries[0].Name()
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.pem")

	require.NoError(t, atomicfile.Write(path, []byte("one"), 0o600))
	require.NoError(t, atomicfile.Write(path, []byte("two"), 0o600))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "two", string(got))
	require.Equal(t, "f.pem", onlyEntry(t, dir))
}

// TestWritePerm: the file gets perm exactly (0666 too: the umask does not
// apply), and a replaced file's old mode does not carry over.
func TestWritePerm(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes")
	}
	path := filepath.Join(t.TempDir(), "f")
	for _, perm := range []fs.FileMode{0o666, 0o600, 0o640} {
		require.NoError(t, atomicfile.Write(path, []byte("x"), perm))
		fi, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, perm, fi.Mode().Perm())
	}
}

// TestWriteFails: a failed write says which file, leaves what was at path
// as it was and no temporary file behind.
func TestWriteFails(t *testing.T) {
	dir := t.TempDir()
	// The rename fails: a folder that is not empty stands at path.
	taken := filepath.Join(dir, "taken")
	require.NoError(t, os.Mkdir(taken, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(taken, "x"), []byte("x"), 0o600))
	require.ErrorContains(t, atomicfile.Write(taken, []byte("new"), 0o600), taken)
	require.Equal(t, "taken", onlyEntry(t, dir))
	require.Equal(t, "x", onlyEntry(t, taken))

	// The temporary file cannot be made: no such folder.
	missing := filepath.Join(dir, "missing", "f")
	require.ErrorContains(t, atomicfile.Write(missing, []byte("new"), 0o600), missing)
	require.Equal(t, "taken", onlyEntry(t, dir))
}
