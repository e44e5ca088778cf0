package wait

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	errNotYet := errors.New("not yet")
	errGone := errors.New("gone")
	for _, tc := range []struct {
		name    string
		conds   []error // what cond returns, call after call
		timeout time.Duration
		calls   int
		want    error
	}{
		{name: "ok/at-once", conds: []error{nil}, timeout: time.Second, calls: 1},
		{name: "ok/third-call", conds: []error{errNotYet, errNotYet, nil}, timeout: 5 * time.Second, calls: 3},
		{name: "fail/stop", conds: []error{errNotYet, Stop(errGone), nil}, timeout: 5 * time.Second, calls: 2, want: errGone},
		{name: "fail/deadline", conds: []error{errNotYet}, timeout: 50 * time.Millisecond, want: context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), tc.timeout)
			defer cancel()
			calls := 0
			err := Until(ctx, time.Millisecond, func(context.Context) error {
				c := tc.conds[min(calls, len(tc.conds)-1)]
				calls++
				return c
			})
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if tc.calls != 0 && calls != tc.calls {
				t.Errorf("%d calls, want %d", calls, tc.calls)
			}
			if errors.Is(tc.want, context.DeadlineExceeded) && !strings.Contains(err.Error(), errNotYet.Error()) {
				t.Errorf("a timeout should name the condition's last error: %v", err)
			}
		})
	}
}
