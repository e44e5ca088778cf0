package cli

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
)

// ExitInterrupted is the exit status of a command that Ctrl-C (SIGINT)
// stopped: 128 + 2, what a shell reports for a program the signal ended.
// SIGTERM's is 128 + 15.
const ExitInterrupted = 130

// Interrupted returns the error of a command that Ctrl-C stopped: exit
// status ExitInterrupted, message "interrupted".
func Interrupted() error { return signalError(os.Interrupt) }

// signalError is the error of a command stopped by sig: 128 + its number, as
// a shell reports it.
func signalError(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return &Error{Code: ExitFailure, Err: errors.New(sig.String())}
	}
	msg := "interrupted"
	if s == syscall.SIGTERM {
		msg = "terminated"
	}
	return &Error{Code: 128 + int(s), Err: errors.New(msg)}
}

// SignalContext returns a copy of parent that ends at the first SIGINT or
// SIGTERM, with the signal's *Error as its cause (Interrupted for Ctrl-C).
// Main reports a command whose context ended so with that error, whatever
// error the command returned for it. After the first signal the default
// action is back: a second Ctrl-C kills the process at once. stop releases
// the signals; call it when the command is done.
func SignalContext(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-signals:
			signal.Stop(signals)
			cancel(signalError(sig))
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(signals)
		close(done)
		cancel(context.Canceled)
	}
}
