package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/render"
	"github.com/tetherproject/tether/pkg/api"
)

// NewHTTPServer wraps the API handler in an http.Server with the API's
// limits: header size and read/write/idle timeouts (slow clients cannot hold
// a connection), per-connection peer caching, and the TLS configuration.
// tetherd serves it with Serve on a Listener, which terminates TLS itself and
// enforces the connection caps (tlsConfig is then unused); ServeTLS on a
// plain listener works too, without those caps.
//
// It speaks HTTP/1.1 only. Go's HTTP/2 server applies neither
// ReadHeaderTimeout nor ReadTimeout to a header block in progress: a client
// that sends half a HEADERS frame holds its connection until IdleTimeout,
// which would make the header timeout a dead letter.
func NewHTTPServer(h http.Handler, tlsConfig *tls.Config, logger *slog.Logger) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	srv := &http.Server{
		Protocols:         &protocols,
		Handler:           boundHeaders(closeOld(h)),
		TLSConfig:         tlsConfig,
		MaxHeaderBytes:    MaxHeaderBytes,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return connContext(auth.ConnContext(ctx, c), c)
		},
	}
	if logger != nil {
		// TLS handshake failures and the like: worth a debug line, no more.
		srv.ErrorLog = log.New(&slogWriter{logger}, "", 0)
	}
	return srv
}

// boundHeaders answers 431 headers_too_large, and closes the connection, to
// a request whose line and header fields pass MaxHeaderBytes, before any
// other handler sees it. net/http's own bound (MaxHeaderBytes) is looser: it
// reads up to 4 KiB more before it refuses, and up to 4 KiB more again on a
// kept-alive connection (what it had buffered of the next request), so the
// documented bound is checked here, to the byte.
func boundHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if headerBytes(r) > MaxHeaderBytes {
			w.Header().Set("Connection", "close")
			render.Error(w, r, nil, &api.Error{Code: api.CodeHeadersTooLarge, Message: fmt.Sprintf("request headers over %d KiB", MaxHeaderBytes>>10)})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// headerBytes is the size of r's request line and header lines as sent,
// CRLFs and the blank line included, less the spaces around header values
// that the parser drops: "GET /path HTTP/1.1\r\n", "Host: h\r\n", then
// "Name: value\r\n" per field, then "\r\n".
func headerBytes(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2 + 2
	if r.Host != "" {
		n += len("Host: ") + len(r.Host) + 2
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n
}

// closeOld asks the client to reconnect (Connection: close) once its
// connection is older than the listener's MaxAge.
func closeOld(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tooOld(r, time.Now()) {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	w.log.Debug("http.server", slog.String("detail", string(p)))
	return len(p), nil
}

// Health serves /healthz (the process answers), /readyz (ready() is nil:
// 200, else 503 with the reason) and /metrics from gatherer.
func Health(ready func() error, gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathHealthz, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET "+api.PathReadyz, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET "+api.PathMetrics, promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	return mux
}
