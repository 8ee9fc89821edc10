package bootstrap

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"confidential-vault.internal/bootstrap/fakeopenbao"
)

const testClusterID = "9c3e1f0a-2b4d-4c6e-8f1a-3b5d7e9f1a2c"

// serve starts the fake OpenBao with the listener files in dir, as OpenBao's listener loads them.
func serve(t *testing.T, dir string, state fakeopenbao.State) *fakeopenbao.Server {
	t.Helper()
	certificate, err := tls.LoadX509KeyPair(filepath.Join(dir, "listener.crt"), filepath.Join(dir, "listener.key"))
	if err != nil {
		t.Fatal(err)
	}
	server := fakeopenbao.Start(certificate, state)
	t.Cleanup(server.Close)
	return server
}

func healthURL(server *fakeopenbao.Server) string {
	return strings.Replace(LoopbackHealthURL, "https://127.0.0.1:8200", server.URL, 1)
}

// The host routes the enclave's loopback connection: only this start's own OpenBao may answer.
func TestStoreHealthIsReadOnlyFromThisEnclavesListener(t *testing.T) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ownDir := t.TempDir()
	own, err := StartWith(testConfig, newProvider(), ownDir, discard, Identity{CAKey: caKey})
	if err != nil {
		t.Fatal(err)
	}
	client, err := PinnedHealthClient(own.CACertificate(), own.LeafPublicKey())
	if err != nil {
		t.Fatal(err)
	}
	unsealed := fakeopenbao.State{Initialized: true, ClusterID: testClusterID}
	state, err := ReadStoreState(context.Background(), client, healthURL(serve(t, ownDir, unsealed)))
	if err != nil || state != (StoreState{Initialized: true, ClusterID: testClusterID}) {
		t.Fatalf("own listener: %+v, %v", state, err)
	}

	// Another replica with the same (derived) CA but its own leaf: it may serve another store.
	replicaDir := t.TempDir()
	if _, err := StartWith(testConfig, newProvider(), replicaDir, discard, Identity{CAKey: caKey}); err != nil {
		t.Fatal(err)
	}
	otherCADir := t.TempDir()
	if _, err := Start(testConfig, newProvider(), otherCADir, discard); err != nil {
		t.Fatal(err)
	}
	host := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"initialized":true,"sealed":false,"cluster_id":%q}`, testClusterID)
	}))
	t.Cleanup(host.Close)
	for name, c := range map[string]struct {
		url  string
		want string
	}{
		"another replica under the same CA": {healthURL(serve(t, replicaDir, unsealed)), "not for this enclave's listener key"},
		"another enclave's CA":              {healthURL(serve(t, otherCADir, unsealed)), "does not chain to the listener CA"},
		"the host's own server":             {host.URL + "/v1/sys/health", "does not chain to the listener CA"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ReadStoreState(context.Background(), client, c.url)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error = %v, want %q", err, c.want)
			}
		})
	}
}

// startPinned starts a listener in a temporary directory and returns a health client pinned to it, as the enclave's.
func startPinned(t *testing.T, provider Enclave) (string, *Listener, *http.Client) {
	t.Helper()
	dir := t.TempDir()
	listener, err := Start(testConfig, provider, dir, discard)
	if err != nil {
		t.Fatal(err)
	}
	client, err := PinnedHealthClient(listener.CACertificate(), listener.LeafPublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return dir, listener, client
}

func TestReadStoreStateGetsEveryStateInOneReading(t *testing.T) {
	dir, _, client := startPinned(t, newProvider())
	server := serve(t, dir, fakeopenbao.State{})
	for name, c := range map[string]struct {
		state fakeopenbao.State
		want  StoreState
	}{
		// Without uninitcode, sealedcode and standbyok OpenBao answers 501, 503 and 429: the query asks for 200s.
		"uninitialised":     {fakeopenbao.State{Sealed: true}, StoreState{}},
		"sealed":            {fakeopenbao.State{Initialized: true, Sealed: true, ClusterID: testClusterID}, StoreState{Initialized: true}},
		"active":            {fakeopenbao.State{Initialized: true, ClusterID: testClusterID}, StoreState{Initialized: true, ClusterID: testClusterID}},
		"standby (HA mode)": {fakeopenbao.State{Initialized: true, Standby: true, ClusterID: testClusterID}, StoreState{Initialized: true, ClusterID: testClusterID}},
	} {
		t.Run(name, func(t *testing.T) {
			server.Set(c.state)
			got, err := ReadStoreState(context.Background(), client, healthURL(server))
			if err != nil || got != c.want {
				t.Errorf("state %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
	server.Set(fakeopenbao.State{Initialized: true, ClusterID: "../../etc"})
	if _, err := ReadStoreState(context.Background(), client, healthURL(server)); err == nil || !strings.Contains(err.Error(), "not a UUID") {
		t.Errorf("a malformed cluster_id was accepted: %v", err)
	}
}

// boundStates returns the initialized and cluster_id fields of every binding the provider was asked to attest.
func boundStates(t *testing.T, bound [][]byte) []string {
	t.Helper()
	var states []string
	for _, data := range bound {
		_, tail, found := strings.Cut(string(data), `"initialized":`)
		if !found {
			t.Fatalf("binding without initialized: %s", data)
		}
		states = append(states, strings.TrimSuffix(tail, "}"))
	}
	return states
}

func TestWatchStoreReissuesWhenTheStoreChangesAndStopsOnARefusal(t *testing.T) {
	provider := newProvider()
	dir, listener, client := startPinned(t, provider)
	server := serve(t, dir, fakeopenbao.State{Sealed: true})

	// What the check answers, call by call: pass (the first reading), pass, pass, the record store unreachable, a
	// refusal.
	results := []error{nil, nil, nil, errors.New("API server unreachable"), fmt.Errorf("%w: it is uninitialised", ErrStoreRefused)}
	var checked []StoreState
	check := func(_ context.Context, state StoreState) error {
		checked = append(checked, state)
		result := results[0]
		results = results[1:]
		return result
	}
	waits := make(chan time.Duration)
	fire := make(chan time.Time)
	done := make(chan error, 1)
	go func() {
		done <- listener.watchStore(context.Background(), client, healthURL(server), check, func(d time.Duration) <-chan time.Time {
			waits <- d
			return fire
		})
	}()
	next := func(state fakeopenbao.State, wantWait time.Duration) {
		t.Helper()
		if got := <-waits; got != wantWait {
			t.Fatalf("waits %s, want %s", got, wantWait)
		}
		server.Set(state)
		fire <- time.Time{}
	}

	// Uninitialised, as the first certificate already says: checked (the first reading always is), nothing to reissue.
	next(fakeopenbao.State{Initialized: true, Sealed: true}, 2*time.Second)
	next(fakeopenbao.State{Initialized: true, ClusterID: testClusterID}, 2*time.Second)
	// Settled: the slow poll, and an unchanged store is not checked again.
	next(fakeopenbao.State{Initialized: true, ClusterID: testClusterID}, 30*time.Second)
	// The store is wiped and the record store is unreachable: the certificate keeps the state the check passed, and
	// the watch retries quickly; the retry is refused.
	next(fakeopenbao.State{Sealed: true}, 30*time.Second)
	if got := <-waits; got != 2*time.Second {
		t.Fatalf("waits %s after a failed check, want the quick poll", got)
	}
	fire <- time.Time{}
	err := <-done
	if !errors.Is(err, ErrStoreRefused) {
		t.Fatalf("watch ended with %v, want the refusal", err)
	}

	want := []string{
		`false,"cluster_id":""`, // Start
		`true,"cluster_id":""`,  // sealed
		`true,"cluster_id":"` + testClusterID + `"`,
	}
	if got := boundStates(t, provider.BoundData()); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("bound store states %q, want %q", got, want)
	}
	wantChecked := []StoreState{{}, {Initialized: true}, {Initialized: true, ClusterID: testClusterID}, {}, {}}
	if fmt.Sprint(checked) != fmt.Sprint(wantChecked) {
		t.Errorf("checked %v, want %v (the first reading, each change, and a change again after a failed check)", checked, wantChecked)
	}
	if !strings.Contains(string(listener.Binding()), `"initialized":true,"cluster_id":"`+testClusterID) {
		t.Errorf("after the refusal the binding is %s: the refused state must never be bound", listener.Binding())
	}
}

// A store the host wiped before this start reads as uninitialised, which the first certificate already binds: the
// first reading is checked all the same, so a record that names another store stops the enclave at once instead of
// serving the empty store until someone initialises it.
func TestAStoreUninitialisedAtStartIsCheckedOnTheFirstReading(t *testing.T) {
	dir, listener, client := startPinned(t, newProvider())
	server := serve(t, dir, fakeopenbao.State{})
	var checked []StoreState
	check := func(_ context.Context, state StoreState) error {
		checked = append(checked, state)
		return fmt.Errorf("%w: the store is uninitialised, but this enclave served store %s", ErrStoreRefused, testClusterID)
	}
	done := make(chan error, 1)
	go func() {
		done <- listener.watchStore(context.Background(), client, healthURL(server), check, func(time.Duration) <-chan time.Time {
			return make(chan time.Time) // never fires: only the first reading may decide
		})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrStoreRefused) {
			t.Fatalf("watch ended with %v, want the refusal", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first reading of an uninitialised store was not checked")
	}
	if fmt.Sprint(checked) != fmt.Sprint([]StoreState{{}}) {
		t.Errorf("checked %v, want the one uninitialised reading", checked)
	}
}
