package client

import "sync"

// TokenStore keeps a client's session token. Implementations must be safe for
// concurrent use. The token is a bearer credential bound to the SVID's leaf
// certificate: useless without its private key, but still not for logs.
type TokenStore interface {
	// LoadToken returns the stored token, or "" when there is none.
	LoadToken() (string, error)
	// SaveToken replaces the stored token.
	SaveToken(token string) error
	// DeleteToken forgets the stored token; deleting nothing is not an error.
	DeleteToken() error
}

// MemoryStore is a TokenStore in memory, the default. Its zero value is ready
// to use.
type MemoryStore struct {
	mu    sync.Mutex
	token string
}

var _ TokenStore = (*MemoryStore)(nil)

// LoadToken implements TokenStore.
func (s *MemoryStore) LoadToken() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token, nil
}

// SaveToken implements TokenStore.
func (s *MemoryStore) SaveToken(token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
	return nil
}

// DeleteToken implements TokenStore.
func (s *MemoryStore) DeleteToken() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = ""
	return nil
}

// String never shows the token.
func (s *MemoryStore) String() string { return "client.MemoryStore{*** REDACTED ***}" }

// GoString never shows the token, even with %#v.
func (s *MemoryStore) GoString() string { return s.String() }
