package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/pkg/client"
)

// A service connected to the SPIFFE Workload API uses its X509Source both
// for its own SVID (rotated by the agent, picked up at the next TLS
// handshake) and for the trust bundle that verifies tetherd.
func Example() {
	ctx := context.Background()

	// Bounded: without a registration entry for this process the Workload
	// API never answers.
	startCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	source, err := workloadapi.NewX509Source(startCtx,
		workloadapi.WithClientOptions(workloadapi.WithAddr("unix:///run/spire/agent.sock")))
	if err != nil {
		log.Fatalf("no SVID from the Workload API: %v", err)
	}
	defer func() { _ = source.Close() }()

	tether, err := client.New("https://tetherd.example.org:8443",
		spiffeid.RequireFromString("spiffe://example.org/tetherd"), source, source)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = tether.Close() }()

	session, err := tether.Login(ctx)
	var apiErr *client.Error
	if errors.As(err, &apiErr) && apiErr.Code == api.CodeNotAdmin {
		log.Fatalf("this service is not an admin of tetherd: %s", apiErr.Message)
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Println("session", session.SessionID, "expires", session.ExpiresAt)

	// Typed calls...
	sessions, err := tether.List(ctx, spiffeid.ID{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(sessions), "live sessions")

	// ...or any request: the token is attached, and a rotated SVID or an
	// ended session is recovered from once.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.PathSessionsSelf, nil)
	if err != nil {
		log.Fatal(err)
	}
	resp, err := tether.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, len(body))
}

// A program that keeps its token between runs gives the client a TokenStore
// of its own (a file, a keyring...); the tether CLI keeps one file per server
// and SPIFFE ID. Without one, the token lives in memory with the Client.
func ExampleWithTokenStore() {
	var store client.TokenStore = &envStore{name: "MY_SERVICE_TETHER_TOKEN"}
	_ = client.WithTokenStore(store)
}

// envStore keeps the token in an environment variable of this process (an
// illustration: a real store would use a file or a keyring).
type envStore struct{ name string }

func (s *envStore) LoadToken() (string, error)   { return os.Getenv(s.name), nil }
func (s *envStore) SaveToken(token string) error { return os.Setenv(s.name, token) }
func (s *envStore) DeleteToken() error           { return os.Unsetenv(s.name) }
