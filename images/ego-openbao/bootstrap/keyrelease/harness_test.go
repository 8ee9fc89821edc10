package keyrelease

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"confidential-vault.internal/bootstrap/fakekeyvault"
	"confidential-vault.internal/bootstrap/fakemaa"
)

// Key versions as Key Vault writes them (32 lower-case hex digits).
const (
	versionA = "0123456789abcdef0123456789abcdef"
	versionB = "fedcba9876543210fedcba9876543210"
)

// RSA keys are slow to generate: each test binary makes these once.
var (
	keysOnce                          sync.Once
	hsmKeyA, hsmKeyB, testWrappingKey *rsa.PrivateKey
	maaSigningKey                     *rsa.PrivateKey
	keysErr                           error
)

func testKeys(t *testing.T) {
	t.Helper()
	keysOnce.Do(func() {
		for _, key := range []**rsa.PrivateKey{&hsmKeyA, &hsmKeyB, &testWrappingKey, &maaSigningKey} {
			if *key, keysErr = rsa.GenerateKey(rand.Reader, 2048); keysErr != nil {
				return
			}
		}
	})
	if keysErr != nil {
		t.Fatal(keysErr)
	}
}

// world is one enclave start's surroundings: the fake Entra and Key Vault, the fake attestation provider, and the
// enclave's directories (kept across restarts by reusing the world).
type world struct {
	t        *testing.T
	vault    *fakekeyvault.Service
	provider *fakemaa.Provider
	maaURL   string
	config   Config
	sealDir  string
	logs     []string
	sleeps   []time.Duration
	// generateWrappingKey keeps the enclave's own wrapping key generator instead of the pre-made test key.
	generateWrappingKey bool
	wrappingKeys        []*rsa.PrivateKey
}

func newWorld(t *testing.T) *world {
	t.Helper()
	testKeys(t)
	vault, err := fakekeyvault.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vault.Close)
	vault.AddKey(versionA, hsmKeyA)
	vault.AddKey(versionB, hsmKeyB)
	vault.MAAKey = &maaSigningKey.PublicKey
	provider := &fakemaa.Provider{Key: maaSigningKey, KeyID: "maa-signing-key",
		Claims: fakemaa.SGXClaims(strings.Repeat("ab", 32), strings.Repeat("cd", 32), 1, 2, false)}
	maaURL := startMAA(t, vault, provider)
	vault.Policy = func(claims map[string]any) error {
		if claims["iss"] != maaURL || claims["x-ms-sgx-is-debuggable"] != false || claims["x-ms-sgx-mrsigner"] != strings.Repeat("ab", 32) {
			return fmt.Errorf("claims %v do not satisfy the release policy", claims)
		}
		return nil
	}
	root := t.TempDir()
	tokenFile := filepath.Join(root, "azure-identity-token")
	if err := os.WriteFile(tokenFile, []byte(vault.FederatedToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := parseKeyIDOnTheFake(vault.KeyID(versionA))
	if err != nil {
		t.Fatal(err)
	}
	return &world{
		t:        t,
		vault:    vault,
		provider: provider,
		maaURL:   maaURL,
		config: Config{Key: key, ClientID: vault.ClientID, TenantID: vault.TenantID, FederatedTokenFile: tokenFile,
			AuthorityHost: vault.URL},
		sealDir: filepath.Join(root, "run", "bao-seal"),
	}
}

// startMAA serves the provider's Attest OpenEnclave over TLS with a certificate from the fake vault's CA (the one
// roots the releaser trusts) and returns its URL, the tokens' issuer.
func startMAA(t *testing.T, vault *fakekeyvault.Service, provider *fakemaa.Provider) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	certificate, err := vault.IssueCertificate(key.Public(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	server := httptest.NewUnstartedServer(provider)
	server.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{certificate}, PrivateKey: key}}}
	server.StartTLS()
	t.Cleanup(server.Close)
	return server.URL
}

func (w *world) keyID(version string) KeyID {
	w.t.Helper()
	key, err := parseKeyIDOnTheFake(w.vault.KeyID(version))
	if err != nil {
		w.t.Fatal(err)
	}
	return key
}

// releaser is what Prepare builds, with the test's CA, directories, a recorded sleep and a pre-made wrapping key.
func (w *world) releaser() *Releaser {
	r := newReleaser(w.config, w.provider, w.maaURL, func(format string, args ...any) {
		w.logs = append(w.logs, fmt.Sprintf(format, args...))
	}, w.vault.Roots)
	r.retry.sleep = func(_ context.Context, d time.Duration) error {
		w.sleeps = append(w.sleeps, d)
		return nil
	}
	generate := r.newWrappingKey
	r.newWrappingKey = func() (*rsa.PrivateKey, error) {
		key := testWrappingKey
		if w.generateWrappingKey {
			var err error
			if key, err = generate(); err != nil {
				return nil, err
			}
		}
		w.wrappingKeys = append(w.wrappingKeys, key)
		return key, nil
	}
	r.sealDir = w.sealDir
	return r
}

func (w *world) prepare() (*Prepared, error) {
	return w.releaser().prepare(context.Background())
}

func (w *world) mustPrepare() *Prepared {
	w.t.Helper()
	prepared, err := w.prepare()
	if err != nil {
		w.t.Fatalf("prepare: %v\nlog:\n%s", err, strings.Join(w.logs, "\n"))
	}
	return prepared
}

func (w *world) readSealFile(name string) string {
	w.t.Helper()
	content, err := os.ReadFile(filepath.Join(w.sealDir, name))
	if err != nil {
		w.t.Fatal(err)
	}
	return string(content)
}

// assertNoSealFiles: after a failed release nothing may be there for OpenBao to read.
func (w *world) assertNoSealFiles() {
	w.t.Helper()
	entries, err := os.ReadDir(w.sealDir)
	if err != nil && !os.IsNotExist(err) {
		w.t.Fatal(err)
	}
	if len(entries) > 0 {
		w.t.Errorf("%s holds %d entries after a failed release, want none", w.sealDir, len(entries))
	}
}

// parseKeyIDOnTheFake parses a key id of the fake Key Vault (https://127.0.0.1:<port>/keys/...), which ParseKeyID
// refuses: only Azure's key services are allowed there.
func parseKeyIDOnTheFake(raw string) (KeyID, error) {
	return parseKeyID(raw, func(host string) bool { return strings.HasPrefix(host, "127.0.0.1:") })
}
