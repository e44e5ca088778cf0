package svid_test

import (
	"crypto/x509"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/svid"
)

func x509svidVerify(certs []*x509.Certificate, ca *svid.DevCA) (spiffeid.ID, [][]*x509.Certificate, error) {
	return x509svid.Verify(certs, ca.Bundle())
}
