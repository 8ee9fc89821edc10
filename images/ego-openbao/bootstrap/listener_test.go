package bootstrap

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"confidential-vault.internal/bootstrap/fakemaa"
)

const testMAAURL = "https://sharedweu.weu.attest.azure.net"

var testConfig = Config{
	MAAURL:   testMAAURL,
	DNSNames: []string{"vault.example.com", "openbao.vault.svc"},
}

var signingKey = sync.OnceValue(func() *rsa.PrivateKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return key
})

func newProvider() *fakemaa.Provider {
	return &fakemaa.Provider{
		Key:    signingKey(),
		KeyID:  "maa-test-key",
		Claims: fakemaa.SGXClaims(strings.Repeat("a", 64), strings.Repeat("b", 64), 1, 2, false),
	}
}

func discard(string, ...any) {}

// readListener reads what Start left in dir, the way OpenBao's listener and a client see it.
func readListener(t *testing.T, dir string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	certificatePEM, err := os.ReadFile(filepath.Join(dir, "listener.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(certificatePEM)
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("listener.crt is not exactly one PEM certificate: %q", certificatePEM)
	}
	certificate, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "listener.key"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ = pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("listener.key is not a PKCS#8 PEM key")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return certificate, parsed.(*ecdsa.PrivateKey)
}

func extensionText(t *testing.T, certificate *x509.Certificate, oid asn1.ObjectIdentifier) (string, bool) {
	t.Helper()
	for _, extension := range certificate.Extensions {
		if !extension.Id.Equal(oid) {
			continue
		}
		if extension.Critical {
			t.Errorf("extension %v is critical: TLS clients that do not know it would reject the certificate", oid)
		}
		var text string
		rest, err := asn1.UnmarshalWithParams(extension.Value, &text, "utf8")
		if err != nil || len(rest) != 0 {
			t.Fatalf("extension %v is not one DER UTF8String: %v", oid, err)
		}
		return text, true
	}
	return "", false
}

// issuerOf returns the CA certificate the leaf carries.
func issuerOf(t *testing.T, certificate *x509.Certificate) *x509.Certificate {
	t.Helper()
	for _, extension := range certificate.Extensions {
		if extension.Id.Equal(OIDIssuerCertificate) {
			issuer, err := x509.ParseCertificate(extension.Value)
			if err != nil {
				t.Fatal(err)
			}
			return issuer
		}
	}
	t.Fatal("no issuer certificate extension")
	return nil
}

// verifyRS256 checks a token's signature independently of fakemaa and returns its claims.
func verifyRS256(t *testing.T, token string, key *rsa.PublicKey) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	signature, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], signature); err != nil {
		t.Fatalf("token signature: %v", err)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestStartBindsTheListenerKeyIntoTheCertificatesToken(t *testing.T) {
	dir := t.TempDir()
	provider := newProvider()
	if _, err := Start(testConfig, provider, dir, discard); err != nil {
		t.Fatal(err)
	}
	certificate, key := readListener(t, dir)

	if !key.PublicKey.Equal(certificate.PublicKey) {
		t.Fatal("listener.key does not belong to listener.crt")
	}
	for name, want := range map[string]os.FileMode{"listener.key": 0o600, "listener.crt": 0o644} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", name, info.Mode().Perm(), want)
		}
	}
	issuer := issuerOf(t, certificate)
	if err := certificate.CheckSignatureFrom(issuer); err != nil {
		t.Errorf("the embedded issuer did not sign the certificate: %v", err)
	}
	if err := issuer.CheckSignatureFrom(issuer); err != nil || !issuer.IsCA || !issuer.MaxPathLenZero ||
		issuer.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("the issuer is not a self-signed CA certificate, path length 0, certSign|CRLSign (%v)", err)
	}
	if issuer.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Error("the CA key is the leaf key: the leaf key must be its own, per start")
	}
	caDigest := sha256.Sum256(issuer.RawSubjectPublicKeyInfo)
	if want := "OpenBao attested listener CA " + hex.EncodeToString(caDigest[:8]); issuer.Subject.CommonName != want ||
		!issuer.NotBefore.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) || !issuer.NotAfter.Equal(time.Date(2126, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("CA certificate %q valid %s to %s, want %q from 2026-01-01 to 2126-01-01", issuer.Subject.CommonName,
			issuer.NotBefore, issuer.NotAfter, want)
	}
	if err := certificate.VerifyHostname("vault.example.com"); err != nil {
		t.Error(err)
	}
	if err := certificate.VerifyHostname("openbao.vault.svc"); err != nil {
		t.Error(err)
	}

	token, ok := extensionText(t, certificate, OIDAttestationToken)
	if !ok {
		t.Fatal("no attestation token extension")
	}
	if _, simulated := extensionText(t, certificate, OIDSimulation); simulated {
		t.Error("an attested certificate says it is simulated")
	}
	claims := verifyRS256(t, token, &signingKey().PublicKey)
	if claims["iss"] != testMAAURL || claims["x-ms-sgx-mrsigner"] != strings.Repeat("a", 64) {
		t.Errorf("token is not the provider's: %v", claims)
	}

	// What a client recomputes from the certificate alone: SHA-256 over the SubjectPublicKeyInfo as served.
	spkiDigest := sha256.Sum256(certificate.RawSubjectPublicKeyInfo)
	if want := "OpenBao attested listener " + hex.EncodeToString(spkiDigest[:8]); certificate.Subject.CommonName != want {
		t.Errorf("leaf subject %q, want %q", certificate.Subject.CommonName, want)
	}
	// Shamir (Start): no seal key fields; the first certificate of a start has not read OpenBao's health yet.
	want := `{"v":3,"purpose":"confidential-vault/openbao-listener","listener_spki_sha256":"` +
		hex.EncodeToString(spkiDigest[:]) + `","ca_spki_sha256":"` + hex.EncodeToString(caDigest[:]) +
		`","seal_key_id":"","previous_seal_key_id":"","release_jwk_thumbprint":"","initialized":false,"cluster_id":""}`
	held, err := base64.RawURLEncoding.DecodeString(claims["x-ms-sgx-ehd"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if string(held) != want {
		t.Errorf("x-ms-sgx-ehd = %s, want %s", held, want)
	}
	if bound := provider.BoundData(); len(bound) != 1 || string(bound[0]) != want {
		t.Errorf("the enclave asked MAA to bind %q, want exactly [%s]", bound, want)
	}
}

func TestSimulationMarksTheCertificateAndAsksForNoToken(t *testing.T) {
	dir := t.TempDir()
	provider := newProvider()
	config := Config{DNSNames: []string{"openbao"}, Simulation: true}
	if _, err := Start(config, provider, dir, discard); err != nil {
		t.Fatal(err)
	}
	certificate, _ := readListener(t, dir)
	note, ok := extensionText(t, certificate, OIDSimulation)
	if !ok || !strings.Contains(note, "OE_SIMULATION=1") {
		t.Errorf("simulation extension = %q, %v", note, ok)
	}
	if _, ok := extensionText(t, certificate, OIDAttestationToken); ok {
		t.Error("a simulated certificate carries a token")
	}
	if bound := provider.BoundData(); len(bound) != 0 {
		t.Errorf("a simulation asked the provider for tokens: %q", bound)
	}
}

func TestStartFailsWithoutATokenForThisKey(t *testing.T) {
	cases := map[string]struct {
		prepare func(*fakemaa.Provider)
		want    string
	}{
		"provider fails": {
			prepare: func(p *fakemaa.Provider) { p.Fail(errors.New("quote rejected")) },
			want:    "obtaining an attestation token from " + testMAAURL + ": quote rejected",
		},
		"token binds other data": {
			prepare: func(p *fakemaa.Provider) {
				p.Claims["x-ms-sgx-ehd"] = base64.RawURLEncoding.EncodeToString([]byte(`{"v":1}`))
			},
			want: "x-ms-sgx-ehd is not the data this enclave bound",
		},
		"token without expiry": {
			prepare: func(p *fakemaa.Provider) { p.Claims["exp"] = nil },
			want:    "lacks x-ms-sgx-ehd, iat or exp",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			provider := newProvider()
			c.prepare(provider)
			_, err := Start(testConfig, provider, dir, discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want %q", err, c.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "listener.crt")); !os.IsNotExist(err) {
				t.Errorf("a certificate was written without a valid token: %v", err)
			}
		})
	}
}

func TestReissuedCertificateVerifiesAgainstThePinnedOne(t *testing.T) {
	dir := t.TempDir()
	listener, err := Start(testConfig, newProvider(), dir, discard)
	if err != nil {
		t.Fatal(err)
	}
	first, key := readListener(t, dir)
	pinned := issuerOf(t, first) // what scripts/verify.py writes as the client's CA file
	reloads := 0
	listener.OnReissue(func() error { reloads++; return nil })
	if err := listener.Reissue(); err != nil {
		t.Fatal(err)
	}
	reissued, reissuedKey := readListener(t, dir)

	if reloads != 1 {
		t.Errorf("the server was asked to reload %d times, want 1", reloads)
	}
	if !reissuedKey.Equal(key) || reissued.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("a reissue must keep the key and change the certificate")
	}
	roots := x509.NewCertPool()
	roots.AddCert(pinned)
	if _, err := first.Verify(x509.VerifyOptions{Roots: roots, DNSName: "vault.example.com"}); err != nil {
		t.Errorf("a client rejects the certificate it pinned the issuer of: %v", err)
	}
	if _, err := reissued.Verify(x509.VerifyOptions{Roots: roots, DNSName: "vault.example.com"}); err != nil {
		t.Errorf("a client that pinned the first certificate rejects the reissued one: %v", err)
	}

	// Another Shamir start (another CA key) is not trusted through the pin, even with the same names.
	otherDir := t.TempDir()
	if _, err := Start(testConfig, newProvider(), otherDir, discard); err != nil {
		t.Fatal(err)
	}
	other, _ := readListener(t, otherDir)
	if _, err := other.Verify(x509.VerifyOptions{Roots: roots, DNSName: "vault.example.com"}); err == nil {
		t.Error("the pinned certificate vouches for another key")
	}
}

func TestReissueReportsAServerThatDidNotReload(t *testing.T) {
	listener, err := Start(testConfig, newProvider(), t.TempDir(), discard)
	if err != nil {
		t.Fatal(err)
	}
	listener.OnReissue(func() error { return errors.New("tls: private key does not match public key") })
	err = listener.Reissue()
	if err == nil || !strings.Contains(err.Error(), "did not reload") {
		t.Errorf("error = %v", err)
	}
}

func TestRefreshRunsAtHalfTheTokenLifeAndRetriesWithBackoff(t *testing.T) {
	provider := newProvider()
	provider.Lifetime = 8 * time.Hour
	var logMu sync.Mutex
	var logged []string
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		logged = append(logged, fmt.Sprintf(format, args...))
	}
	listener, err := Start(testConfig, provider, t.TempDir(), logf)
	if err != nil {
		t.Fatal(err)
	}

	waits := make(chan time.Duration)
	fire := make(chan time.Time)
	after := func(d time.Duration) <-chan time.Time {
		waits <- d
		return fire
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		listener.refresh(ctx, after)
		close(done)
	}()

	expect := func(want time.Duration) {
		t.Helper()
		if got := <-waits; got != want {
			t.Fatalf("waits %s, want %s", got, want)
		}
	}
	expect(4 * time.Hour)
	provider.Fail(errors.New("provider unavailable"))
	fire <- time.Time{}
	expect(time.Minute)
	fire <- time.Time{}
	expect(2 * time.Minute)
	for range 4 {
		fire <- time.Time{}
		<-waits
	}
	fire <- time.Time{}
	expect(15 * time.Minute)
	provider.Fail(nil)
	fire <- time.Time{}
	expect(4 * time.Hour)
	cancel()
	<-done

	if requests := len(provider.BoundData()); requests != 9 {
		t.Errorf("%d token requests, want 9 (start, 7 failed refreshes, 1 success)", requests)
	}
	logMu.Lock()
	defer logMu.Unlock()
	failures, unserved := 0, 0
	for _, line := range logged {
		if strings.Contains(line, "refreshing the listener certificate failed") && strings.Contains(line, "provider unavailable") {
			failures++
		}
		if strings.Contains(line, "no OpenBao listener serves /run/bao-tls/listener.crt") {
			unserved++
		}
	}
	if failures != 7 || unserved != 1 {
		t.Errorf("logged %d refresh failures (want 7) and %d warnings that nothing serves the certificate (want 1): %q",
			failures, unserved, logged)
	}
}

func base64URL(text string) string { return base64.RawURLEncoding.EncodeToString([]byte(text)) }
