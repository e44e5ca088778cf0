package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit statuses.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Error is an error that carries the exit status it ends the command with.
type Error struct {
	Code int // ExitFailure, ExitUsage, or ExitInterrupted (128 + a signal's number)
	Err  error
}

// Error implements error with the message of Err.
func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

// Usagef returns a usage error (exit 2); its message names the flag or
// argument at fault.
func Usagef(format string, args ...any) error {
	return &Error{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// Failf returns a failure (exit 1) whose message says what to do about it.
func Failf(format string, args ...any) error {
	return &Error{Code: ExitFailure, Err: fmt.Errorf(format, args...)}
}

// ExitCode is the exit status for err: ExitOK for nil, the Code of the first
// *Error in its chain, else ExitFailure.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ExitFailure
}

// Main runs root with args, its output going to stdout and stderr, and
// returns the exit status for os.Exit. An error is written to stderr as one
// line, "NAME: message", which on a usage error ends by pointing to --help.
// cobra's own refusals are usage errors (see the package comment). A command
// that fails once ctx has ended with an *Error as its cause (a signal, see
// SignalContext) ends with that error instead.
func Main(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	// Main writes the error; cobra would add a second line and the usage.
	root.SilenceErrors = true
	root.SilenceUsage = true
	// cobra adds these at Execute; made now, they are classified below too.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd(args...)
	versionFlag(root)
	classify(root)

	err := root.ExecuteContext(ctx)
	if err != nil && ctx.Err() != nil {
		// Stopped by a signal (see SignalContext): that is the outcome,
		// whatever error the command made of its ended context.
		var stopped *Error
		if cause := context.Cause(ctx); errors.As(cause, &stopped) {
			err = cause
		}
	}
	code := ExitCode(err)
	if err != nil {
		msg := oneLine(err.Error())
		if code == ExitUsage {
			msg += fmt.Sprintf(" (see '%s --help')", root.Name())
		}
		_, _ = fmt.Fprintf(stderr, "%s: %s\n", root.Name(), msg) // nothing to do if stderr is gone
	}
	return code
}

// classify makes the flag errors and the argument errors of c and of every
// command below it usage errors.
func classify(c *cobra.Command) {
	flagErr := c.FlagErrorFunc()
	c.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usage(flagErr(c, err)) })
	valid := c.Args
	if valid == nil && !c.HasParent() && c.HasSubCommands() && c.Runnable() {
		// Without Args, cobra checks the arguments of a root with commands
		// itself, as NoArgs does, where no validator can be wrapped. (A root
		// that does not run prints its help instead: leave it to cobra.)
		valid = cobra.NoArgs
	}
	if valid != nil {
		c.Args = func(c *cobra.Command, args []string) error {
			err := valid(c, args)
			if err != nil && len(args) > 0 {
				err = suggest(c, args[0], err)
			}
			return usage(err)
		}
	}
	for _, sub := range c.Commands() {
		classify(sub)
	}
}

// suggest adds to err the commands of c that arg may have meant, as cobra
// does for a root without Args (but on the same line).
func suggest(c *cobra.Command, arg string, err error) error {
	if c.DisableSuggestions {
		return err
	}
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2 // cobra's default
	}
	if s := c.SuggestionsFor(arg); len(s) > 0 {
		return fmt.Errorf("%w (did you mean %s?)", err, strings.Join(s, " or "))
	}
	return err
}

// usage makes err a usage error unless it carries its status already.
func usage(err error) error {
	var e *Error
	if err == nil || errors.As(err, &e) {
		return err
	}
	return &Error{Code: ExitUsage, Err: err}
}

// oneLine joins the lines of a message (errors.Join's, say) with "; ".
func oneLine(msg string) string {
	var parts []string
	for _, l := range strings.FieldsFunc(msg, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}
