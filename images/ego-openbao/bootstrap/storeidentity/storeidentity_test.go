package storeidentity

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"confidential-vault.internal/bootstrap"
	"confidential-vault.internal/bootstrap/fakekube"
)

const (
	keyIDA    = "https://kv-test.vault.azure.net/keys/openbao-seal/0123456789abcdef0123456789abcdef"
	keyIDB    = "https://kv-test.vault.azure.net/keys/openbao-seal/fedcba9876543210fedcba9876543210"
	clusterA  = "1a2b3c4d-0000-4000-8000-00000000000a"
	clusterB  = "1a2b3c4d-0000-4000-8000-00000000000b"
	namespace = "vault"
)

func newKey(t *testing.T, id string) Key {
	t.Helper()
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	return Key{SealKeyID: id, Secret: secret}
}

// kube starts the fake API server and a KubernetesStore built as in the pod, from the environment and the service
// account directory.
func kube(t *testing.T) (*fakekube.Server, *KubernetesStore) {
	t.Helper()
	server := fakekube.Start(namespace, "service-account-token")
	t.Cleanup(server.Close)
	dir := t.TempDir()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: server.Certificate().Raw})
	for name, content := range map[string]string{"token": "service-account-token\n", "ca.crt": string(caPEM), "namespace": namespace} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	address, err := url.Parse(server.URL)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{EnvKubernetesHost: address.Hostname(), EnvKubernetesPort: address.Port()}
	store, err := KubernetesStoreFromEnv(func(name string) string { return env[name] }, dir)
	if err != nil {
		t.Fatal(err)
	}
	return server, store
}

type logRecorder struct{ lines []string }

func (l *logRecorder) logf(format string, args ...any) {
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}
func (l *logRecorder) String() string { return strings.Join(l.lines, "\n") }

func storedRecord(t *testing.T, server *fakekube.Server) (record map[string]any, raw []byte) {
	t.Helper()
	secret, ok := server.Secret(SecretName)
	if !ok {
		t.Fatalf("no Secret %s", SecretName)
	}
	raw = secret.Data["record"]
	if err := json.Unmarshal(raw, &record); err != nil {
		t.Fatalf("the Secret's record is not JSON: %q", raw)
	}
	return record, raw
}

func TestRecordRoundTripAndItsKey(t *testing.T) {
	a, b := newKey(t, keyIDA), newKey(t, keyIDB)
	content, err := Seal(a, clusterA)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(content, []byte(clusterA)) {
		t.Error("the record holds the cluster_id in clear")
	}
	clusterID, under, err := Open(Keys{Current: a}, content)
	if err != nil || clusterID != clusterA || under.SealKeyID != keyIDA {
		t.Fatalf("Open = %q under %q, %v", clusterID, under.SealKeyID, err)
	}
	// Another released key cannot open it, even when the record is relabelled to that key's id.
	if _, _, err := Open(Keys{Current: Key{SealKeyID: keyIDA, Secret: b.Secret}}, content); err == nil {
		t.Error("a record opened with a key derived from another released key")
	}
	relabelled := strings.Replace(string(content), keyIDA, keyIDB, 1)
	if _, _, err := Open(Keys{Current: Key{SealKeyID: keyIDB, Secret: a.Secret}}, []byte(relabelled)); err == nil {
		t.Error("a record relabelled to another key version opened: the key id must be authenticated")
	}
}

func TestFirstSightRecordsTheStoreAndALaterStartMatchesIt(t *testing.T) {
	server, store := kube(t)
	log := &logRecorder{}
	checker := &Checker{Store: store, Keys: Keys{Current: newKey(t, keyIDA)}, Logf: log.logf}

	// Before `bao operator init` and while sealed there is nothing to record.
	for _, state := range []bootstrap.StoreState{{}, {Initialized: true}} {
		if err := checker.Check(context.Background(), state); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := server.Secret(SecretName); ok {
		t.Fatal("a record was written before the store had a cluster_id")
	}
	if err := checker.Check(context.Background(), bootstrap.StoreState{Initialized: true, ClusterID: clusterA}); err != nil {
		t.Fatal(err)
	}
	record, raw := storedRecord(t, server)
	if record["seal_key_id"] != keyIDA || record["v"] != 1.0 || bytes.Contains(raw, []byte(clusterA)) {
		t.Errorf("record %s: want version 1 under %s, the cluster_id encrypted", raw, keyIDA)
	}
	if secret, _ := server.Secret(SecretName); secret.Labels["app.kubernetes.io/managed-by"] != "openbao-enclave" {
		t.Errorf("Secret labels %v", secret.Labels)
	}

	// A restart (a new checker) on the same store: it matches, nothing is written.
	writes := len(server.Requests())
	restarted := &Checker{Store: store, Keys: checker.Keys, Logf: log.logf}
	if err := restarted.Check(context.Background(), bootstrap.StoreState{Initialized: true, ClusterID: clusterA}); err != nil {
		t.Fatal(err)
	}
	if requests := server.Requests()[writes:]; len(requests) != 1 || !strings.HasPrefix(requests[0], "GET ") {
		t.Errorf("a matching store made requests %q, want one GET", requests)
	}
	if !strings.Contains(log.String(), "store identity matches the record in Secret vault/openbao-store-identity: cluster_id "+clusterA) {
		t.Errorf("log %q", log)
	}
}

// The attack of issue 20: the host points the genuine enclave at another store (wiped, or initialised by the
// attacker). Both are refused while the record decrypts.
func TestAForeignOrUninitialisedStoreIsRefused(t *testing.T) {
	for name, c := range map[string]struct {
		state bootstrap.StoreState
		want  string
	}{
		"uninitialised (wiped, or a new empty database)": {bootstrap.StoreState{}, "it is uninitialised, but this enclave has served the store with cluster_id " + clusterA},
		"another cluster_id (re-initialised)":            {bootstrap.StoreState{Initialized: true, ClusterID: clusterB}, "its cluster_id is " + clusterB + ", but this enclave has served the store with cluster_id " + clusterA},
	} {
		t.Run(name, func(t *testing.T) {
			server, store := kube(t)
			key := newKey(t, keyIDA)
			record, err := Seal(key, clusterA)
			if err != nil {
				t.Fatal(err)
			}
			server.Put(SecretName, map[string][]byte{"record": record})
			checker := &Checker{Store: store, Keys: Keys{Current: key}, Logf: (&logRecorder{}).logf}
			err = checker.Check(context.Background(), c.state)
			if !errors.Is(err, bootstrap.ErrStoreRefused) || !strings.Contains(err.Error(), c.want) ||
				!strings.Contains(err.Error(), "new seal key version") {
				t.Fatalf("error = %v, want a refusal saying %q and the recovery path", err, c.want)
			}
			if secret, _ := server.Secret(SecretName); !bytes.Equal(secret.Data["record"], record) {
				t.Error("a refused store changed the record")
			}
		})
	}
}

func TestARecordUnderThePreviousKeyIsReEncryptedUnderTheCurrentOne(t *testing.T) {
	server, store := kube(t)
	previous, current := newKey(t, keyIDA), newKey(t, keyIDB)
	record, err := Seal(previous, clusterA)
	if err != nil {
		t.Fatal(err)
	}
	server.Put(SecretName, map[string][]byte{"record": record})
	log := &logRecorder{}
	checker := &Checker{Store: store, Keys: Keys{Current: current, Previous: &previous}, Logf: log.logf}
	// A foreign store is refused under the previous key too.
	if err := checker.Check(context.Background(), bootstrap.StoreState{Initialized: true, ClusterID: clusterB}); !errors.Is(err, bootstrap.ErrStoreRefused) {
		t.Fatalf("foreign store under the previous key's record: %v", err)
	}
	if err := checker.Check(context.Background(), bootstrap.StoreState{Initialized: true, ClusterID: clusterA}); err != nil {
		t.Fatal(err)
	}
	stored, raw := storedRecord(t, server)
	if stored["seal_key_id"] != keyIDB {
		t.Fatalf("record %s still under the previous key", raw)
	}
	// After the rotation the previous key is gone: the record must open with the current key alone.
	if clusterID, _, err := Open(Keys{Current: current}, raw); err != nil || clusterID != clusterA {
		t.Errorf("the re-encrypted record: %q, %v", clusterID, err)
	}
	if !strings.Contains(log.String(), "re-encrypted from "+keyIDA+" to "+keyIDB) {
		t.Errorf("log %q", log)
	}
	if requests := server.Requests(); !strings.HasPrefix(requests[len(requests)-1], "PUT ") {
		t.Errorf("requests %q: the existing Secret must be updated", requests)
	}
}

// Undecryptable (altered, or under a key version this enclave no longer has) counts as no record: the deliberate
// re-initialisation under a new key version starts over, and an altered record cannot force a refusal.
func TestAnUnusableRecordCountsAsNone(t *testing.T) {
	key := newKey(t, keyIDA)
	for name, damage := range map[string]func(record []byte) []byte{
		"altered ciphertext": func(record []byte) []byte {
			var stored map[string]any
			_ = json.Unmarshal(record, &stored)
			stored["nonce"] = "AAAAAAAAAAAAAAAA"
			out, _ := json.Marshal(stored)
			return out
		},
		"under a retired key version": func([]byte) []byte {
			old, _ := Seal(Key{SealKeyID: "https://kv-test.vault.azure.net/keys/openbao-seal/" + strings.Repeat("1", 32), Secret: make([]byte, 32)}, clusterA)
			return old
		},
		"not a record": func([]byte) []byte { return []byte("garbage") },
	} {
		t.Run(name, func(t *testing.T) {
			server, store := kube(t)
			record, err := Seal(key, clusterA)
			if err != nil {
				t.Fatal(err)
			}
			server.Put(SecretName, map[string][]byte{"record": damage(record)})
			log := &logRecorder{}
			checker := &Checker{Store: store, Keys: Keys{Current: key}, Logf: log.logf}
			if err := checker.Check(context.Background(), bootstrap.StoreState{Initialized: true, ClusterID: clusterB}); err != nil {
				t.Fatalf("an unusable record decided: %v", err)
			}
			if !strings.Contains(log.String(), "store identity record in Secret vault/openbao-store-identity unusable, treating it as none") {
				t.Errorf("log %q does not say the record was unusable", log)
			}
			_, raw := storedRecord(t, server)
			if clusterID, _, err := Open(Keys{Current: key}, raw); err != nil || clusterID != clusterB {
				t.Errorf("the store was not recorded afresh: %q, %v", clusterID, err)
			}
		})
	}
}

func TestAnUnreachableOrRacingRecordStoreDecidesNothing(t *testing.T) {
	server, store := kube(t)
	key := newKey(t, keyIDA)
	checker := &Checker{Store: store, Keys: Keys{Current: key}, Logf: (&logRecorder{}).logf}
	state := bootstrap.StoreState{Initialized: true, ClusterID: clusterA}

	server.Fail = 503
	err := checker.Check(context.Background(), state)
	if err == nil || errors.Is(err, bootstrap.ErrStoreRefused) || !strings.Contains(err.Error(), "answered 503") {
		t.Errorf("API server down: %v, want an error that is not a refusal", err)
	}
	server.Fail = 0

	// Another replica creates the record between this one's GET and POST: a conflict, retried by the watch.
	racing := &racingStore{KubernetesStore: store, server: server, key: key}
	err = (&Checker{Store: racing, Keys: checker.Keys, Logf: checker.Logf}).Check(context.Background(), state)
	if !errors.Is(err, ErrConflict) || errors.Is(err, bootstrap.ErrStoreRefused) {
		t.Errorf("racing create: %v, want ErrConflict", err)
	}
	if err := checker.Check(context.Background(), state); err != nil {
		t.Errorf("the retry after the race: %v", err)
	}
}

type racingStore struct {
	*KubernetesStore
	server *fakekube.Server
	key    Key
}

func (r *racingStore) Load(ctx context.Context) (Stored, error) {
	stored, err := r.KubernetesStore.Load(ctx)
	record, _ := Seal(r.key, clusterA)
	r.server.Put(SecretName, map[string][]byte{"record": record})
	return stored, err
}

func TestFileStoreRoundTrip(t *testing.T) {
	store := FileStore{Path: filepath.Join(t.TempDir(), "records", "store-identity.json")}
	key := newKey(t, keyIDA)
	checker := &Checker{Store: store, Keys: Keys{Current: key}, Logf: (&logRecorder{}).logf}
	if err := checker.Check(context.Background(), bootstrap.StoreState{Initialized: true, ClusterID: clusterA}); err != nil {
		t.Fatal(err)
	}
	if err := checker.Check(context.Background(), bootstrap.StoreState{}); !errors.Is(err, bootstrap.ErrStoreRefused) {
		t.Errorf("a wiped store with a file record: %v, want a refusal", err)
	}
}

func TestKubernetesStoreFromEnvRefusesANamespaceThatIsNotOne(t *testing.T) {
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "namespace"), []byte("../../api/v1/secrets"), 0o600)
	env := map[string]string{EnvKubernetesHost: "10.0.0.1", EnvKubernetesPort: "443"}
	_, err := KubernetesStoreFromEnv(func(name string) string { return env[name] }, dir)
	if err == nil || !strings.Contains(err.Error(), "is not a namespace name") {
		t.Errorf("error = %v", err)
	}
}
