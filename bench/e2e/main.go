package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Bounds of a run: what the flags may ask at most.
const (
	maxRounds = 100
	maxSlice  = 5 * time.Second
	maxConns  = 32 // tetherd's default --max-connections-per-identity
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == roleServe {
		if err := serveMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "e2e serve:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	if err := run(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
}

// config is a run's settings, from the flags.
type config struct {
	tetherd string
	rounds  int
	slice   time.Duration
	warmup  time.Duration
	conns   int
	phases  string
	clkTck  int
	timeout time.Duration
	perfDir string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("e2e", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.tetherd, "tetherd", "", "the tetherd binary (required)")
	fs.IntVar(&c.rounds, "rounds", 15, fmt.Sprintf("rounds of each phase, at most %d", maxRounds))
	fs.DurationVar(&c.slice, "slice", 500*time.Millisecond, fmt.Sprintf("measured time of one side in one round, at most %s", maxSlice))
	fs.DurationVar(&c.warmup, "warmup", 100*time.Millisecond, "load before each slice, not measured")
	fs.IntVar(&c.conns, "conns", 4, fmt.Sprintf("concurrent connections (workers) per side, at most %d", maxConns))
	fs.StringVar(&c.phases, "phases", "request,login", "phases to run: request, login or both")
	fs.IntVar(&c.clkTck, "clk-tck", 100, "clock ticks per second of /proc/PID/stat (getconf CLK_TCK)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "the whole run, servers included, ends after this")
	fs.StringVar(&c.perfDir, "perf", "", "if set, record each server with perf record into this folder: SIDE.perf.data for the request phase, SIDE.login.perf.data for the login phase (a profiling run: its figures are perturbed)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case c.tetherd == "":
		return c, errors.New("-tetherd is required")
	case c.rounds < 1 || c.rounds > maxRounds:
		return c, fmt.Errorf("-rounds: between 1 and %d", maxRounds)
	case c.slice <= 0 || c.slice > maxSlice:
		return c, fmt.Errorf("-slice: above 0 and at most %s", maxSlice)
	case c.warmup < 0 || c.warmup > maxSlice:
		return c, fmt.Errorf("-warmup: at most %s", maxSlice)
	case c.conns < 1 || c.conns > maxConns:
		return c, fmt.Errorf("-conns: between 1 and %d", maxConns)
	case c.clkTck <= 0:
		return c, errors.New("-clk-tck must be positive")
	case c.timeout <= 0:
		return c, errors.New("-timeout must be positive")
	}
	return c, nil
}
