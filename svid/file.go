package svid

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/internal/boundedfile"
)

// FileConfig names the PEM files of a FileSource.
type FileConfig struct {
	// CertFile is the SVID chain, leaf first; KeyFile its PKCS#8 key;
	// BundleFile the trust domain's CA certificates.
	CertFile, KeyFile, BundleFile string
	// ID pins the identity (see PinState): the files must hold an SVID
	// with this SPIFFE ID, at start and at every reload. Zero pins the ID of
	// the SVID the files hold at start.
	ID spiffeid.ID
	// Interval is how often the files are checked for changes; default 1s.
	Interval time.Duration
	// OnReload is called after every reload attempt that found changed
	// files: err is nil when the new identity was taken, else why the last
	// good one was kept.
	OnReload func(err error)
}

// Files says which of a FileSource's files: a set of FileCert, FileKey and
// FileBundle.
type Files uint8

// The files of a FileSource.
const (
	FileCert   Files = 1 << iota // FileConfig.CertFile
	FileKey                      // FileConfig.KeyFile
	FileBundle                   // FileConfig.BundleFile
)

// FileError is why the files of a FileSource could not be loaded, and which
// of them is at fault: one file, or FileCert|FileKey for a key that does
// not match its certificate. Its message is Err's, which names the files.
type FileError struct {
	Files Files
	Err   error
}

// Error implements error with Err's message.
func (e *FileError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *FileError) Unwrap() error { return e.Err }

// fileErr is err as the fault of files.
func fileErr(files Files, err error) error { return &FileError{Files: files, Err: err} }

// FileSource serves an SVID and bundle read from PEM files, and re-reads
// them when their content changes (polled) or when Reload is called. A
// change that does not parse (garbage, a half-written file, a key that does
// not match the certificate), whose certificate has already expired, or
// whose SPIFFE ID is not the pinned one leaves the last good identity in
// place.
type FileSource struct {
	cfg FileConfig

	reloadMu sync.Mutex // one reload at a time (poller and SIGHUP)
	mu       sync.RWMutex
	svid     *x509svid.SVID
	bundle   *x509bundle.Bundle
	digest   [32]byte
	pin      PinState
	updated  chan struct{}

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var _ Pinner = (*FileSource)(nil)

// NewFileSource loads the files once and starts watching them. An error
// that is the files' fault is a *FileError (the pinned ID not held,
// ErrNotPinned, is not); its message names the file at fault.
func NewFileSource(cfg FileConfig) (*FileSource, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	s := &FileSource{cfg: cfg, updated: make(chan struct{}, 1)}
	raw, digest, err := s.read()
	if err != nil {
		return nil, err
	}
	svid, bundle, err := parseFiles(cfg, raw)
	if err != nil {
		return nil, err
	}
	s.pin = PinState{ID: cfg.ID, Configured: !cfg.ID.IsZero(), Offered: []spiffeid.ID{svid.ID}}
	if s.pin.ID.IsZero() {
		s.pin.ID = svid.ID
	}
	if err := s.checkPin(svid); err != nil {
		return nil, err
	}
	s.svid, s.bundle, s.digest = svid, bundle, digest
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go s.watch(ctx)
	return s, nil
}

// GetX509SVID implements x509svid.Source.
func (s *FileSource) GetX509SVID() (*x509svid.SVID, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.svid, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *FileSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if td != s.bundle.TrustDomain() {
		return nil, fmt.Errorf("svid: no bundle for trust domain %q", td)
	}
	return s.bundle, nil
}

// Pin implements Pinner.
func (s *FileSource) Pin() PinState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.pin
	p.Offered = append([]spiffeid.ID(nil), p.Offered...)
	return p
}

// checkPin is nil if svid carries the pinned ID (s.pin.ID never changes
// once NewFileSource has set it).
func (s *FileSource) checkPin(svid *x509svid.SVID) error {
	if svid.ID == s.pin.ID {
		return nil
	}
	return fmt.Errorf("%w: %s holds an SVID of %s, not of %s", ErrNotPinned, s.cfg.CertFile, svid.ID, s.pin.ID)
}

// Updated receives a value after each change of identity taken.
func (s *FileSource) Updated() <-chan struct{} { return s.updated }

// Reload re-reads the files now if their content changed. It returns nil
// when nothing changed or the new identity was taken; the outcome is also
// reported to OnReload.
func (s *FileSource) Reload() error {
	_, err := s.reload(true)
	return err
}

// reload reads and, if the files changed, parses them and takes the new
// identity. It returns the digest it read; report says whether a failure goes
// to OnReload (a success always does).
func (s *FileSource) reload(report bool) ([32]byte, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	raw, digest, err := s.read()
	if err == nil {
		s.mu.RLock()
		// s.digest is of the files last taken. While the pin is missing,
		// files equal to them (the original put back over another ID's)
		// are not "unchanged": they restore the pin, so they are parsed
		// and checked again (an expired SVID is refused, as always).
		same := digest == s.digest && !s.pin.Missing
		s.mu.RUnlock()
		if same {
			return digest, nil
		}
		var (
			svid   *x509svid.SVID
			bundle *x509bundle.Bundle
		)
		svid, bundle, err = parseFiles(s.cfg, raw)
		if err == nil && !time.Now().Before(svid.Certificates[0].NotAfter) {
			// An SVID that has already expired is no better than garbage:
			// taking it would make tetherd unusable until the next write.
			err = fileErr(FileCert, fmt.Errorf("svid: %s: the certificate expired at %s", s.cfg.CertFile,
				svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339)))
		}
		if err == nil {
			err = s.checkPin(svid)
			if err != nil && report {
				s.mu.Lock()
				s.pin.Offered, s.pin.Missing = []spiffeid.ID{svid.ID}, true
				s.mu.Unlock()
			}
		}
		if err == nil {
			s.mu.Lock()
			s.svid, s.bundle, s.digest = svid, bundle, digest
			s.pin.Offered, s.pin.Missing = []spiffeid.ID{svid.ID}, false
			s.mu.Unlock()
			select {
			case s.updated <- struct{}{}:
			default:
			}
		}
	}
	if s.cfg.OnReload != nil && (err == nil || report) {
		s.cfg.OnReload(err)
	}
	return digest, err
}

// Close stops watching. It is safe to call more than once.
func (s *FileSource) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
	})
	return nil
}

func (s *FileSource) watch(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	// A writer such as spiffe-helper replaces the certificate and the key
	// one after the other; between the two writes the pair does not match.
	// So a failing state is reported only when it is still there, unchanged,
	// one tick later (pending), and then once (lastBad) until the files
	// change again. Files equal to the last taken ones are skipped, unless
	// the pin is missing: then they restore it (see reload).
	var pending, lastBad [32]byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, digest, _ := s.read()
		s.mu.RLock()
		current, missing := s.digest, s.pin.Missing
		s.mu.RUnlock()
		if (digest == current && !missing) || digest == lastBad {
			continue
		}
		settled := digest == pending
		got, err := s.reload(settled)
		switch {
		case err == nil:
			// Taken: a bad state seen before is new again if it returns.
			pending, lastBad = [32]byte{}, [32]byte{}
		case settled && got == digest:
			lastBad = digest
		default:
			pending = got
		}
	}
}

// read returns the three files' bytes and a digest over all of them. When a
// file cannot be read the digest still reflects what was read, so the same
// failure is not reported twice; the error is a *FileError of the first
// file that could not be read (its message names all of them).
func (s *FileSource) read() ([3][]byte, [32]byte, error) {
	var raw [3][]byte
	var errs []error
	var failed Files
	h := sha256.New()
	for i, path := range []string{s.cfg.CertFile, s.cfg.KeyFile, s.cfg.BundleFile} {
		b, err := boundedfile.Read(path, boundedfile.MaxPEM)
		if err != nil {
			errs = append(errs, fmt.Errorf("svid: read %s: %w", path, err))
			h.Write([]byte(err.Error()))
			if failed == 0 {
				failed = FileCert << i
			}
		}
		raw[i] = b
		h.Write(b)
		h.Write([]byte{0})
	}
	var d [32]byte
	copy(d[:], h.Sum(nil))
	if len(errs) > 0 {
		return raw, d, fileErr(failed, errors.Join(errs...))
	}
	return raw, d, nil
}

func parseFiles(cfg FileConfig, raw [3][]byte) (*x509svid.SVID, *x509bundle.Bundle, error) {
	if bytes.Contains(raw[1], []byte("ENCRYPTED")) {
		return nil, nil, fileErr(FileKey, fmt.Errorf("svid: %s: encrypted keys are not supported", cfg.KeyFile))
	}
	svid, err := x509svid.Parse(raw[0], raw[1])
	if err != nil {
		return nil, nil, fileErr(blame(raw[0], raw[1]), fmt.Errorf("svid: %s and %s: %w", cfg.CertFile, cfg.KeyFile, err))
	}
	bundle, err := x509bundle.Parse(svid.ID.TrustDomain(), raw[2])
	if err != nil {
		return nil, nil, fileErr(FileBundle, fmt.Errorf("svid: %s: %w", cfg.BundleFile, err))
	}
	if len(bundle.X509Authorities()) == 0 {
		return nil, nil, fileErr(FileBundle, fmt.Errorf("svid: %s: no CA certificate", cfg.BundleFile))
	}
	return svid, bundle, nil
}

// blame says which of the certificate and key files (PEM) that
// x509svid.Parse refused is at fault: the certificate file if it holds no
// certificate that parses, else the key file if it holds no PKCS#8 key that
// parses, else the certificate if the key is its key (the certificate is
// then no X509-SVID), else both: the key does not match the certificate.
func blame(certPEM, keyPEM []byte) Files {
	var leaf *x509.Certificate
	for b, rest := pem.Decode(certPEM); b != nil; b, rest = pem.Decode(rest) {
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return FileCert
		}
		if leaf == nil {
			leaf = c
		}
	}
	if leaf == nil {
		return FileCert
	}
	var key crypto.PrivateKey
	for b, rest := pem.Decode(keyPEM); b != nil && key == nil; b, rest = pem.Decode(rest) {
		if b.Type != "PRIVATE KEY" {
			continue
		}
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return FileKey
		}
		key = k
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return FileKey
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(leaf.PublicKey) {
		return FileCert
	}
	return FileCert | FileKey
}
