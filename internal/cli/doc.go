// Package cli is what tetherd and tether share as commands: how an error
// becomes an exit status and one line on stderr, and the version both print.
//
// The exit status is 0 on success, 1 on any failure and 2 on a usage error
// (a bad flag, argument or configuration). An error says which by being, or
// wrapping, an *Error; Usagef and Failf make one, and an error that is no
// *Error is a failure. Main runs a cobra command and makes cobra's own
// refusals (an unknown flag, command or shorthand, a bad flag value, a wrong
// number of arguments) usage errors where cobra reports them, in the flag
// error function and the Args validators: no error message is ever read to
// choose a status.
//
// A command stopped by a signal exits 128 + the signal's number, as a shell
// reports it: 130 (ExitInterrupted) for Ctrl-C. SignalContext ends the
// command's context with that *Error as its cause, and Main reports it in
// place of whatever error the command made of its ended context.
package cli
