package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// target is one side of the comparison: where it listens, the request it
// is sent, the status it must answer, and its process.
type target struct {
	name   string
	addr   string
	req    []byte // a whole HTTP/1.1 request
	status int
	pid    int
	tls    *tls.Config
}

// client is one kept-alive connection of the load client: a minimal
// HTTP/1.1 client that writes a prepared request and reads the answer
// (status line, headers, Content-Length body). It costs the same for every
// side, so differences between the sides are the servers'.
type client struct {
	t    *target
	conn *tls.Conn
	br   *bufio.Reader
	body []byte
}

func dial(ctx context.Context, t *target) (*client, error) {
	d := tls.Dialer{Config: t.tls}
	c, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*tls.Conn) //nolint:forcetypeassert // tls.Dialer returns *tls.Conn
	return &client{t: t, conn: tc, br: bufio.NewReaderSize(tc, 8<<10)}, nil
}

// do sends the target's request once and reads its answer; closed is true
// when the server asked to close the connection (then it is closed).
func (c *client) do() (closed bool, err error) {
	if _, err := c.conn.Write(c.t.req); err != nil {
		return false, err
	}
	status, length, closed, err := readHead(c.br)
	if err != nil {
		return false, err
	}
	if cap(c.body) < length {
		c.body = make([]byte, length)
	}
	if _, err := io.ReadFull(c.br, c.body[:length]); err != nil {
		return false, err
	}
	if status != c.t.status {
		return false, fmt.Errorf("%s: status %d, want %d: %.200s", c.t.name, status, c.t.status, c.body[:length])
	}
	if closed {
		_ = c.conn.Close()
	}
	return closed, nil
}

func (c *client) close() { _ = c.conn.Close() }

// readHead reads an HTTP/1.1 answer's status line and headers, and returns
// its status, Content-Length (required: every answer here has one) and
// whether it says Connection: close.
func readHead(br *bufio.Reader) (status, length int, closed bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, 0, false, fmt.Errorf("bad status line %q", line)
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, 0, false, fmt.Errorf("bad status line %q", line)
	}
	length = -1
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, 0, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, 0, false, fmt.Errorf("bad header line %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 || length > 1<<20 {
				return 0, 0, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")):
			closed = bytes.EqualFold(value, []byte("close"))
		}
	}
	if length < 0 {
		return 0, 0, false, errors.New("an answer without Content-Length")
	}
	return status, length, closed, nil
}

// request is a GET or POST with no body to host, with extra header lines.
func request(method, path, host string, headers ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, host)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if method == "POST" {
		b.WriteString("Content-Length: 0\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// slice is what one side did in one measured slice.
type slice struct {
	answers   int64
	took      time.Duration
	serverCPU time.Duration // the server process's, from /proc/PID/stat
	clientCPU time.Duration // this process's
}

// load runs workers against t until ctx ends: each worker keeps one
// connection alive (keepAlive) or opens a new one per op; it counts answers
// in n. The first error stops it.
type load struct {
	t         *target
	conns     int
	keepAlive bool
	n         atomic.Int64
	errOnce   sync.Once
	err       error
}

func (l *load) fail(err error) { l.errOnce.Do(func() { l.err = err }) }

func (l *load) run(ctx context.Context, pool []*client) {
	var wg sync.WaitGroup
	for i := range l.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *client
			if l.keepAlive {
				c = pool[i]
			}
			for ctx.Err() == nil {
				if c == nil {
					var err error
					if c, err = dial(ctx, l.t); err != nil {
						if ctx.Err() == nil {
							l.fail(err)
						}
						return
					}
				}
				closed, err := c.do()
				if err != nil {
					if ctx.Err() == nil {
						l.fail(err)
					}
					return
				}
				l.n.Add(1)
				if !l.keepAlive {
					c.close()
					c = nil
				} else if closed { // tetherd's --max-connection-age: reconnect
					c = nil
				}
			}
			if l.keepAlive && c != nil {
				pool[i] = c
			} else if l.keepAlive {
				pool[i] = nil
			}
		}()
	}
	wg.Wait()
}

// measure loads t for warmup, then for d while counting, and returns the
// slice. pool holds the kept-alive connections between slices.
func measure(ctx context.Context, t *target, conns int, keepAlive bool, pool []*client, warmup, d time.Duration, clkTck int) (slice, error) {
	if keepAlive {
		for i := range pool {
			if pool[i] == nil {
				c, err := dial(ctx, t)
				if err != nil {
					return slice{}, err
				}
				pool[i] = c
			}
		}
	}
	l := &load{t: t, conns: conns, keepAlive: keepAlive}
	lctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); l.run(lctx, pool) }()
	sleep(ctx, warmup)
	n0, s0, c0, t0 := l.n.Load(), procCPU(t.pid, clkTck), procCPU(os.Getpid(), clkTck), time.Now()
	sleep(ctx, d)
	n1, s1, c1, t1 := l.n.Load(), procCPU(t.pid, clkTck), procCPU(os.Getpid(), clkTck), time.Now()
	stop()
	// A worker in the middle of a request finishes it or fails on the
	// closed context; a failure of the cancelled context is not reported.
	<-done
	if l.err != nil {
		return slice{}, l.err
	}
	if ctx.Err() != nil {
		return slice{}, ctx.Err()
	}
	if s0 < 0 || s1 < 0 {
		return slice{}, fmt.Errorf("%s: cannot read /proc/%d/stat", t.name, t.pid)
	}
	return slice{answers: n1 - n0, took: t1.Sub(t0), serverCPU: s1 - s0, clientCPU: c1 - c0}, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// procCPU is the CPU time (user and system) process pid has used, from
// /proc/PID/stat, or -1 if it cannot be read.
func procCPU(pid, clkTck int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	ticks, err := statTicks(b)
	if err != nil {
		return -1
	}
	return time.Duration(ticks) * time.Second / time.Duration(clkTck)
}

// statTicks is utime+stime (fields 14 and 15) of a /proc/PID/stat line.
// The command name (field 2) is in parentheses and may hold spaces, so the
// fields are counted from its closing parenthesis.
func statTicks(stat []byte) (int64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	f := strings.Fields(string(stat[i+1:])) // field 3 onwards
	if len(f) < 13 {
		return 0, errors.New("short stat line")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return utime + stime, nil
}
