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

// memoryStore is the default TokenStore: the token in memory, for the life of
// the Client.
type memoryStore struct {
	mu    sync.Mutex
	token string
}

var _ TokenStore = (*memoryStore)(nil)

// LoadToken implements TokenStore.
func (s *memoryStore) LoadToken() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token, nil
}

// SaveToken implements TokenStore.
func (s *memoryStore) SaveToken(token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
	return nil
}

// DeleteToken implements TokenStore.
func (s *memoryStore) DeleteToken() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = ""
	return nil
}

// String never shows the token.
func (s *memoryStore) String() string { return "client.memoryStore{*** REDACTED ***}" }

// GoString never shows the token, even with %#v.
func (s *memoryStore) GoString() string { return s.String() }
