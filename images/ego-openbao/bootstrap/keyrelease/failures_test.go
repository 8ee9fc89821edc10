package keyrelease

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"confidential-vault.internal/bootstrap/fakekeyvault"
	"confidential-vault.internal/bootstrap/fakemaa"
)

// assertFails checks the error's text, that no secret is in it, and that OpenBao has no key to read.
func assertFails(t *testing.T, w *world, err error, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("prepare succeeded")
	}
	for _, want := range wants {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	for _, secret := range []string{w.vault.FederatedToken, w.vault.AccessToken} {
		if strings.Contains(err.Error(), secret) || strings.Contains(strings.Join(w.logs, "\n"), secret) {
			t.Errorf("a credential appears in the error or the log: %q", err)
		}
	}
	w.assertNoSealFiles()
}

func TestRefusedReleaseIsFinalAndSaysWhy(t *testing.T) {
	w := newWorld(t)
	w.provider.Claims["x-ms-sgx-is-debuggable"] = true // the policy requires a production enclave
	_, err := w.prepare()
	assertFails(t, w, err, "releasing "+w.vault.KeyID(versionA), "Key Vault", "403 Forbidden", "Forbidden/AccessDenied",
		"Target environment attestation statement cannot be verified", "Key Vault Crypto Service Release User",
		"release policy")
	if n := len(w.vault.Requests(fakekeyvault.Release)); n != 1 || len(w.sleeps) != 0 {
		t.Errorf("%d release requests, %d retries: a refusal must not be retried", n, len(w.sleeps))
	}
}

func TestUnauthorizedAtKeyVaultIsFinal(t *testing.T) {
	w := newWorld(t)
	w.vault.Inject(fakekeyvault.Release, fakekeyvault.Answer{Status: http.StatusUnauthorized,
		Body: `{"error":{"code":"Unauthorized","message":"AKV10032: Invalid issuer."}}`})
	_, err := w.prepare()
	assertFails(t, w, err, "401 Unauthorized", "AKV10032: Invalid issuer.", "did not accept the Entra token")
	if n := len(w.vault.Requests(fakekeyvault.Release)); n != 1 {
		t.Errorf("%d release requests, want 1", n)
	}
}

func TestEntraRefusesAForeignAssertion(t *testing.T) {
	w := newWorld(t)
	w.vault.FederatedToken = "the token of another service account"
	_, err := w.prepare()
	assertFails(t, w, err, "getting an Entra token", "401 Unauthorized", "invalid_client", "AADSTS700213",
		"federated credential")
	if n := len(w.vault.Requests(fakekeyvault.Token)); n != 1 || len(w.vault.Requests(fakekeyvault.Release)) != 0 {
		t.Errorf("%d token requests and a release: a refused assertion is final", n)
	}
}

func TestMissingFederatedTokenFile(t *testing.T) {
	w := newWorld(t)
	w.config.FederatedTokenFile = filepath.Join(t.TempDir(), "absent")
	_, err := w.prepare()
	assertFails(t, w, err, "reading AZURE_FEDERATED_TOKEN_FILE="+w.config.FederatedTokenFile)
	if len(w.sleeps) != 0 {
		t.Error("a missing token file was retried")
	}
}

func TestTransientFailuresAreRetriedWithBackoff(t *testing.T) {
	w := newWorld(t)
	w.vault.Inject(fakekeyvault.Token, fakekeyvault.Answer{Status: http.StatusServiceUnavailable, Body: `{}`})
	w.vault.Inject(fakekeyvault.Release,
		fakekeyvault.Answer{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"3"}},
			Body: `{"error":{"code":"Throttled","message":"slow down"}}`},
		fakekeyvault.Answer{Hang: true},
		fakekeyvault.Answer{Status: http.StatusInternalServerError, Body: `not json`})
	w.mustPrepare()
	// Entra: 503 then success (1 s). Key Vault: 429 with Retry-After 3 (3 s), a dropped connection (2 s, the
	// schedule doubling from 1 s), a 500 (4 s), then success.
	want := []time.Duration{time.Second, 3 * time.Second, 2 * time.Second, 4 * time.Second}
	if !slices.Equal(w.sleeps, want) {
		t.Errorf("waited %v, want %v", w.sleeps, want)
	}
	if n := len(w.vault.Requests(fakekeyvault.Release)); n != 4 {
		t.Errorf("%d release requests, want 4", n)
	}
	if got := w.readSealFile("seal.key"); len(got) != 64 {
		t.Errorf("seal.key has %d characters after the retries, want 64", len(got))
	}
}

func TestRetriesAreBounded(t *testing.T) {
	w := newWorld(t)
	for range 6 {
		w.vault.Inject(fakekeyvault.Release, fakekeyvault.Answer{Status: http.StatusServiceUnavailable,
			Header: http.Header{"Retry-After": {"3600"}}, Body: `{"error":{"code":"ServiceUnavailable","message":"busy"}}`})
	}
	_, err := w.prepare()
	assertFails(t, w, err, "attempt 5 of 5", "503 Service Unavailable", "busy")
	if n := len(w.vault.Requests(fakekeyvault.Release)); n != 5 {
		t.Errorf("%d release requests, want 5", n)
	}
	// Retry-After is honoured up to the longest wait, 16 s.
	if want := []time.Duration{16 * time.Second, 16 * time.Second, 16 * time.Second, 16 * time.Second}; !slices.Equal(w.sleeps, want) {
		t.Errorf("waited %v, want %v", w.sleeps, want)
	}
}

func TestAttestationFailures(t *testing.T) {
	t.Run("provider unavailable: retried, then final", func(t *testing.T) {
		w := newWorld(t)
		w.provider.Fail(errors.New("quote verification backend unavailable"))
		_, err := w.prepare()
		assertFails(t, w, err, "obtaining an attestation token from "+w.maaURL, "attempt 5 of 5",
			"Microsoft Azure Attestation answered 503 Service Unavailable", "quote verification backend unavailable")
		if len(w.vault.Requests(fakekeyvault.Release)) != 0 {
			t.Error("Key Vault was asked without an attestation")
		}
	})
	t.Run("token binds other data", func(t *testing.T) {
		w := newWorld(t)
		w.provider.Claims["x-ms-runtime"] = map[string]any{"keys": []any{}}
		_, err := w.prepare()
		assertFails(t, w, err, "x-ms-runtime is not the wrapping key set this enclave attested")
		if len(w.sleeps) != 0 {
			t.Error("a token for other data was retried")
		}
	})
	t.Run("token without runtime claims", func(t *testing.T) {
		w := newWorld(t)
		w.provider.Claims["x-ms-runtime"] = nil
		_, err := w.prepare()
		assertFails(t, w, err, "the attestation token has no x-ms-runtime")
		if len(w.vault.Requests(fakekeyvault.Release)) != 0 {
			t.Error("Key Vault was asked with a token that cannot name the wrapping key")
		}
	})
	t.Run("report over other data refused: final", func(t *testing.T) {
		w := newWorld(t)
		r := w.releaser()
		r.attester = otherReport{w.provider}
		_, err := r.prepare(context.Background())
		assertFails(t, w, err, "obtaining an attestation token from "+w.maaURL,
			"Microsoft Azure Attestation answered 400 Bad Request", "not SHA-256 of the runtime data", "refused this enclave's report")
		if len(w.sleeps) != 0 || len(w.vault.Requests(fakekeyvault.Release)) != 0 {
			t.Error("a refused report was retried or sent on")
		}
	})
}

// otherReport quotes report data other than the one asked for, as a compromised adapter would.
type otherReport struct{ provider *fakemaa.Provider }

func (o otherReport) GetRemoteReport([]byte) ([]byte, error) {
	return o.provider.GetRemoteReport(make([]byte, 32))
}

// A token over the same JSON Web Key Set as Binary runtime data — what EGo's CreateAzureAttestationToken gets —
// carries it only in x-ms-sgx-ehd; Key Vault reads the wrapping key from x-ms-runtime and refuses it.
func TestKeyVaultRefusesABinaryAttestedWrappingKey(t *testing.T) {
	w := newWorld(t)
	r := w.releaser()
	data, err := ReleaseTargetData(&testWrappingKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	binaryToken, err := w.provider.CreateAzureAttestationToken(data, w.maaURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkRuntimeData(binaryToken, data); err == nil || !strings.Contains(err.Error(), "no x-ms-runtime") {
		t.Errorf("checkRuntimeData accepted a Binary token: %v", err)
	}
	accessToken, err := r.entraToken(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.releaseKey(context.Background(), accessToken, binaryToken, w.keyID(versionA), testWrappingKey)
	var refusal *ServiceError
	if !errors.As(err, &refusal) || refusal.Status != http.StatusBadRequest || !strings.Contains(err.Error(), "no x-ms-runtime claim") {
		t.Fatalf("release with a Binary-attested key: %v, want Key Vault's 400 naming x-ms-runtime", err)
	}
	// The same set attested as JSON is released.
	jsonToken, err := r.attestJSON(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.releaseKey(context.Background(), accessToken, jsonToken, w.keyID(versionA), testWrappingKey); err != nil {
		t.Fatalf("release with a JSON-attested key: %v", err)
	}
}

// Every malformed or tampered answer is refused, without a retry and without a seal key.
func TestMalformedReleasesAreRefused(t *testing.T) {
	testKeys(t)
	smallKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallDER, _ := x509.MarshalPKCS8PrivateKey(smallKey)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	strangerCA, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	strangerCert := selfSigned(t, strangerCA)

	cases := []struct {
		name   string
		answer string
		tamper func(*fakekeyvault.ReleaseParts)
		want   []string
	}{
		{name: "not JSON", answer: `<html>gateway</html>`, want: []string{`not {"value": "<signed release>"}`}},
		{name: "no value", answer: `{"value": ""}`, want: []string{`not {"value": "<signed release>"}`}},
		{name: "value not a JWS", answer: `{"value": "eyJhbGciOiJSUzI1NiJ9.e30"}`, want: []string{"not a compact JWS"}},
		{name: "signature altered", tamper: func(p *fakekeyvault.ReleaseParts) { p.CorruptSignature = true },
			want: []string{"the signature does not verify"}},
		{name: "signed outside the trusted roots", tamper: func(p *fakekeyvault.ReleaseParts) {
			p.Signer, p.Algorithm, p.Chain = strangerCA, "ES256", [][]byte{strangerCert}
		}, want: []string{"the signing certificate", "unknown authority"}},
		{name: "x5c not a certificate", tamper: func(p *fakekeyvault.ReleaseParts) { p.Chain[0] = []byte("nonsense") },
			want: []string{"x5c[0]"}},
		{name: "another key released", tamper: func(p *fakekeyvault.ReleaseParts) { p.KeyID = strings.Replace(p.KeyID, versionA, versionB, 1) },
			want: []string{"Key Vault released", "not the requested"}},
		{name: "EC key", tamper: func(p *fakekeyvault.ReleaseParts) { p.KeyType, p.KeyMaterial = "EC-HSM", ecDER },
			want: []string{`type "EC-HSM"`, "needs an RSA-HSM key"}},
		{name: "no key_hsm", tamper: func(p *fakekeyvault.ReleaseParts) { p.KeyHSM = ""; p.KeyMaterial = nil },
			want: []string{"key material"}},
		{name: "key_hsm not JSON", tamper: func(p *fakekeyvault.ReleaseParts) { p.KeyHSM = base64.RawURLEncoding.EncodeToString([]byte("x")) },
			want: []string{`key_hsm is not {"ciphertext": …}`}},
		{name: "ciphertext too short", tamper: func(p *fakekeyvault.ReleaseParts) {
			p.KeyHSM = base64.RawURLEncoding.EncodeToString([]byte(`{"ciphertext":"AAAA"}`))
		}, want: []string{"the released ciphertext has 3 bytes"}},
		{name: "transient key wrapped with another OAEP hash", tamper: func(p *fakekeyvault.ReleaseParts) { p.OAEPHash = crypto.SHA384 },
			want: []string{"does not decrypt with this enclave's wrapping key"}},
		{name: "transient key of the wrong length", tamper: func(p *fakekeyvault.ReleaseParts) { p.TransientKey = p.TransientKey[:16] },
			want: []string{"the transient key has 16 bytes, want 32"}},
		{name: "released key too small", tamper: func(p *fakekeyvault.ReleaseParts) { p.KeyMaterial, p.N, p.E = smallDER, "", "" },
			want: []string{"has 1024 bits, want at least 2048"}},
		{name: "key material not a key", tamper: func(p *fakekeyvault.ReleaseParts) { p.KeyMaterial = []byte("thirty-two bytes of nothing much") },
			want: []string{"neither a PKCS#8 nor a PKCS#1 RSA private key"}},
		{name: "public key does not match", tamper: func(p *fakekeyvault.ReleaseParts) {
			p.N = base64.RawURLEncoding.EncodeToString(hsmKeyB.N.Bytes())
		}, want: []string{"does not belong to the public key Key Vault describes"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			if c.answer != "" {
				w.vault.Inject(fakekeyvault.Release, fakekeyvault.Answer{Status: http.StatusOK, Body: c.answer})
			}
			w.vault.Tamper = c.tamper
			_, err := w.prepare()
			assertFails(t, w, err, c.want...)
			if len(w.sleeps) != 0 {
				t.Errorf("a malformed answer was retried (%v)", w.sleeps)
			}
		})
	}
}

func TestReleaseSignedWithECDSAIsAccepted(t *testing.T) {
	w := newWorld(t)
	signer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf, err := w.vault.IssueCertificate(signer.Public(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	w.vault.Tamper = func(p *fakekeyvault.ReleaseParts) { p.Signer, p.Algorithm, p.Chain[0] = signer, "ES256", leaf }
	w.mustPrepare()

	w.vault.Tamper = func(p *fakekeyvault.ReleaseParts) { p.Signer, p.Algorithm, p.Chain[0] = signer, "RS256", leaf }
	if _, err := w.prepare(); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("an ECDSA key with alg RS256: err = %v, want a signature failure", err)
	}
}

func TestSigningCertificateMustNameTheVault(t *testing.T) {
	w := newWorld(t)
	signer, _ := rsa.GenerateKey(rand.Reader, 2048)
	leaf, err := w.vault.IssueCertificate(signer.Public(), "other.vault.azure.net")
	if err != nil {
		t.Fatal(err)
	}
	w.vault.Tamper = func(p *fakekeyvault.ReleaseParts) { p.Signer, p.Chain[0] = signer, leaf }
	_, err = w.prepare()
	assertFails(t, w, err, "the signing certificate", "127.0.0.1")
}

func TestSealKeyIsNeverHalfWritten(t *testing.T) {
	w := newWorld(t)
	// A directory where seal.key belongs makes the final rename fail: nothing else may be left behind.
	if err := os.MkdirAll(filepath.Join(w.sealDir, "seal.key", "occupied"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := w.prepare()
	if err == nil || !strings.Contains(err.Error(), "writing the static seal keys") {
		t.Fatalf("err = %v, want a failure to write the seal keys", err)
	}
	entries, _ := os.ReadDir(w.sealDir)
	if len(entries) != 1 || entries[0].Name() != "seal.key" || !entries[0].IsDir() {
		t.Errorf("%s holds %v after the failure: a temporary file was left behind", w.sealDir, entries)
	}

	// Replacing an existing key file: the new content replaces the old whole.
	w2 := newWorld(t)
	os.MkdirAll(w2.sealDir, 0o700)
	os.WriteFile(filepath.Join(w2.sealDir, "seal.key"), []byte(strings.Repeat("0", 64)+"\n"), 0o600)
	w2.mustPrepare()
	if got := w2.readSealFile("seal.key"); len(got) != 64 || got == strings.Repeat("0", 64) {
		t.Errorf("seal.key = %q, want the new key alone", got)
	}
}

func selfSigned(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	template := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
