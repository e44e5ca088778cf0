// Package proc starts the integration suite's child processes (SPIRE server
// and agent, tetherd, probes run through runuser) in process groups of their
// own, and stops them by process ID.
//
// Each child is started with Setpgid, so that signals reach everything it
// forked (runuser and the program it runs), and with a parent-death signal, so
// that a test binary killed by a timeout or a panic does not leave SPIRE
// running behind it.
package proc

import (
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is a started child. Its methods are safe for concurrent use.
type Process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, set before done is closed
	once sync.Once
}

// Start starts cmd, named name in errors, in a new process group.
func Start(name string, cmd *exec.Cmd) (*Process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("proc: start %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Name is the name given to Start.
func (p *Process) Name() string { return p.name }

// PID is the process ID (and process group ID) of the child.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed once the child has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the child has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitCode is the child's exit code once it has exited, -1 if a signal ended
// it or it is still running.
func (p *Process) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// WaitErr is the error of exec.Cmd.Wait once the child has exited, nil before.
func (p *Process) WaitErr() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Signal sends sig to the child's process group.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	err := syscall.Kill(-p.PID(), sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// Stop sends SIGTERM to the process group, waits up to grace for the child to
// exit, then sends SIGKILL and waits for it. It is safe to call more than once
// and after the child has exited. The error is about stopping, not about the
// child's exit status (see ExitCode).
func (p *Process) Stop(grace time.Duration) error {
	var err error
	p.once.Do(func() {
		if sigErr := p.Signal(syscall.SIGTERM); sigErr != nil {
			err = fmt.Errorf("proc: SIGTERM %s (pid %d): %w", p.name, p.PID(), sigErr)
		}
		select {
		case <-p.done:
			return
		case <-time.After(grace):
		}
		err = errors.Join(err, p.kill())
	})
	<-p.done
	return err
}

// Kill sends SIGKILL to the process group and waits for the child to exit.
func (p *Process) Kill() error {
	var err error
	p.once.Do(func() { err = p.kill() })
	<-p.done
	return err
}

func (p *Process) kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("proc: SIGKILL %s (pid %d): %w", p.name, p.PID(), err)
	}
	<-p.done
	return nil
}
