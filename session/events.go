package session

import (
	"context"
	"log/slog"
)

type logAttrsKey struct{}

// WithLogAttrs returns a context whose security events carry attrs too (the
// HTTP layer adds the remote address this way).
func WithLogAttrs(ctx context.Context, attrs ...slog.Attr) context.Context {
	if prev, ok := ctx.Value(logAttrsKey{}).([]slog.Attr); ok {
		attrs = append(append([]slog.Attr(nil), prev...), attrs...)
	}
	return context.WithValue(ctx, logAttrsKey{}, attrs)
}

// event logs a security event with the stable name msg. It never logs a
// token: callers pass only session IDs, SPIFFE IDs, fingerprints and reasons.
func (m *Manager) event(ctx context.Context, level slog.Level, msg string, peer Peer, attrs ...slog.Attr) {
	if ctx == nil {
		ctx = context.Background()
	}
	if !m.log.Enabled(ctx, level) {
		return
	}
	all := make([]slog.Attr, 0, len(attrs)+4)
	if !peer.ID.IsZero() {
		all = append(all, slog.String("spiffe_id", peer.ID.String()))
	}
	if peer.Fingerprint != "" {
		all = append(all, slog.String("fingerprint", peer.Fingerprint))
	}
	all = append(all, attrs...)
	if extra, ok := ctx.Value(logAttrsKey{}).([]slog.Attr); ok {
		all = append(all, extra...)
	}
	m.log.LogAttrs(ctx, level, msg, all...)
}
