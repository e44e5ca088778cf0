package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// chunkConn is a socket that hands out stream in the chunks given, one a
// read (or less, if the read is shorter), then io.EOF.
type chunkConn struct {
	net.Conn
	chunks [][]byte
}

func (c *chunkConn) Read(p []byte) (int, error) {
	for len(c.chunks) > 0 && len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	return n, nil
}

// records makes n TLS-shaped records (5-byte header with a big-endian
// length, then that many bytes; some empty), and the offsets where each ends.
func records(rng *rand.Rand, n int) (stream []byte, ends []int) {
	for i := range n {
		size := rng.IntN(3000)
		if i%7 == 3 {
			size = 0
		}
		stream = append(stream, 23, 3, 3, byte(size>>8), byte(size))
		body := make([]byte, size+8)
		for j := 0; j < size; j += 8 {
			binary.LittleEndian.PutUint64(body[j:], rng.Uint64())
		}
		stream = append(stream, body[:size]...)
		ends = append(ends, len(stream))
	}
	return stream, ends
}

// TestRecordConn: whatever the socket's chunks and the reads' sizes,
// recordConn hands out the stream whole and in order, never a read that
// crosses the end of a record, and keeps bytes (empty is false) exactly
// while some that the socket brought are still to give.
func TestRecordConn(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7)) //nolint:gosec // G404: reproducible test data
		stream, ends := records(rng, 1+rng.IntN(12))
		var chunks [][]byte
		for rest := stream; len(rest) > 0; {
			k := min(len(rest), 1+rng.IntN(8000))
			chunks = append(chunks, bytes.Clone(rest[:k]))
			rest = rest[k:]
		}
		sock := &chunkConn{chunks: chunks}
		rc := &recordConn{Conn: sock}
		var got []byte
		for {
			p := make([]byte, 1+rng.IntN(6000))
			n, err := rc.Read(p)
			start := len(got)
			got = append(got, p[:n]...)
			for _, end := range ends {
				require.False(t, start < end && end < len(got), "seed %d: a read from %d to %d crosses the record end at %d", seed, start, len(got), end)
			}
			sockBytes := 0
			for _, c := range sock.chunks {
				sockBytes += len(c)
			}
			require.Equal(t, len(stream)-len(got)-sockBytes == 0, rc.empty(), "seed %d: empty() while %d bytes are kept", seed, len(stream)-len(got)-sockBytes)
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
		}
		require.Equal(t, stream, got, "seed %d", seed)
	}
}
