// Package devpki is a throwaway SPIFFE PKI for `tetherd dev` and the tests: a
// certificate authority for one trust domain, held in memory, that issues
// X.509 SVIDs as SPIRE does, and the PEM files that hand them to the tether
// CLI. Nothing trusts it outside the process that made it, and tetherd's own
// identity in production never comes from here (see package svid).
package devpki
