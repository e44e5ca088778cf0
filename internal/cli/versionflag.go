package cli

import "github.com/spf13/cobra"

// versionFlag gives root a --version flag that runs root's version command:
// the same output, honouring the same flags (tether --output json
// --version), so that the two cannot drift apart. It does nothing for a
// root without a runnable version command or that has a --version already.
func versionFlag(root *cobra.Command) {
	var version *cobra.Command
	for _, c := range root.Commands() {
		if c.Name() == "version" {
			version = c
		}
	}
	if version == nil || version.RunE == nil || root.RunE == nil || root.Flags().Lookup("version") != nil {
		return
	}
	var show bool
	root.Flags().BoolVar(&show, "version", false, "print the version (what the version command prints)")
	run := root.RunE
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if show {
			return version.RunE(cmd, args)
		}
		return run(cmd, args)
	}
}
