package devpki

import (
	"encoding/pem"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/internal/atomicfile"
)

// WriteSVID writes svid's chain to certPath and its PKCS#8 key to keyPath,
// each atomically and mode 0600.
func WriteSVID(svid *x509svid.SVID, certPath, keyPath string) error {
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		return fmt.Errorf("devpki: encode: %w", err)
	}
	if err := writeFile(certPath, certPEM); err != nil {
		return err
	}
	return writeFile(keyPath, keyPEM)
}

// WriteBundle writes the CA certificate as PEM to path, atomically and mode
// 0600.
func (ca *CA) WriteBundle(path string) error {
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}))
}

func writeFile(path string, data []byte) error {
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("devpki: %w", err)
	}
	return nil
}
