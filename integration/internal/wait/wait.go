// Package wait polls a condition with a ticker until it holds or the context
// ends. The integration suite waits this way instead of sleeping for a
// guessed duration: every wait has a deadline and reports what it last saw.
package wait

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// stopError marks an error that ends the wait at once.
type stopError struct{ err error }

func (s stopError) Error() string { return s.err.Error() }
func (s stopError) Unwrap() error { return s.err }

// Stop wraps err so that Until returns it at once instead of polling again:
// for conditions that can no longer come true (the process died, a request
// that had to succeed failed).
func Stop(err error) error { return stopError{err} }

// Until calls cond at once and then every interval until it returns nil, an
// error made by Stop, or ctx ends. On timeout the error wraps ctx.Err() and
// names cond's last error, so a failure says what was still wrong.
func Until(ctx context.Context, every time.Duration, cond func(context.Context) error) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		var stop stopError
		if errors.As(err, &stop) {
			return stop.err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait: %w; last: %w", ctx.Err(), err)
		case <-t.C:
		}
	}
}
