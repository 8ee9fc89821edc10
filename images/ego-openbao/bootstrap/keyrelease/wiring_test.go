package keyrelease

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"confidential-vault.internal/bootstrap"
)

// The hook asks two packages whether attested unseal is on: the launch plan (which configuration OpenBao reads) and
// ConfigFromEnv (whether a key is released). They must agree for every environment, or OpenBao would run the static
// seal without a key, or Shamir with a released key nobody uses.
func TestLaunchPlanAddsTheStaticSealExactlyWhenTheKeyReleaseIsConfigured(t *testing.T) {
	workloadIdentity := map[string]string{
		EnvAzureClientID:           "55555555-5555-5555-5555-555555555555",
		EnvAzureTenantID:           "33333333-3333-3333-3333-333333333333",
		EnvAzureFederatedTokenFile: FederatedTokenDir + "/azure-identity-token",
		EnvAzureAuthorityHost:      "https://login.microsoftonline.com/",
	}
	keyID := "https://kv-test.vault.azure.net/keys/openbao-seal/" + versionA
	cases := map[string]struct {
		env      map[string]string
		attested bool
	}{
		"nothing":                       {env: map[string]string{}},
		"workload identity only":        {env: workloadIdentity},
		"empty key id":                  {env: map[string]string{"CV_SEAL_KEY_ID": ""}},
		"previous key without current":  {env: map[string]string{"CV_SEAL_PREVIOUS_KEY_ID": keyID}},
		"key and workload identity":     {env: merged(workloadIdentity, map[string]string{"CV_SEAL_KEY_ID": keyID}), attested: true},
		"key without workload identity": {env: map[string]string{"CV_SEAL_KEY_ID": keyID}, attested: true},
		"malformed key id":              {env: merged(workloadIdentity, map[string]string{"CV_SEAL_KEY_ID": "https://kv-test.vault.azure.net/keys/openbao-seal"}), attested: true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			lookup := func(name string) (string, bool) { value, set := c.env[name]; return value, set }
			plan, err := bootstrap.PlanLaunch([]string{"server", "-config=/tmp/storageconfig.hcl"}, lookup)
			if err != nil {
				t.Fatal(err)
			}
			config, configErr := ConfigFromEnv(func(name string) string { return c.env[name] })
			if plan.AttestedUnseal != c.attested {
				t.Errorf("plan.AttestedUnseal = %v, want %v", plan.AttestedUnseal, c.attested)
			}
			wantArgs := []string{"server", "-config=/etc/openbao/openbao.hcl", "-config=/etc/openbao/storage-file.hcl"}
			if c.attested {
				wantArgs = append(wantArgs, "-config=/etc/openbao/seal-static.hcl")
			}
			if strings.Join(plan.Args, " ") != strings.Join(wantArgs, " ") {
				t.Errorf("args %q, want %q", plan.Args, wantArgs)
			}
			// A configuration only with the static seal; without the static seal, no configuration and, unless a
			// rotation names a previous key alone, no error either (the hook refuses to start on any error).
			if config != nil && !plan.AttestedUnseal {
				t.Errorf("ConfigFromEnv returned a key release, but the plan runs Shamir")
			}
			if plan.AttestedUnseal && config == nil && configErr == nil {
				t.Errorf("the plan runs the static seal, but ConfigFromEnv releases no key and reports nothing")
			}
			if !plan.AttestedUnseal && configErr != nil && c.env["CV_SEAL_PREVIOUS_KEY_ID"] == "" {
				t.Errorf("Shamir, yet ConfigFromEnv refused: %v", configErr)
			}
		})
	}
}

func merged(maps ...map[string]string) map[string]string {
	result := map[string]string{}
	for _, m := range maps {
		for key, value := range m {
			result[key] = value
		}
	}
	return result
}

// readServed reads the leaf certificate a listener directory holds and the enclave-held data its token binds.
func readServed(t *testing.T, dir string) (*x509.Certificate, *x509.Certificate, []byte) {
	t.Helper()
	certificatePEM, err := os.ReadFile(filepath.Join(dir, "listener.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certificatePEM)
	if block == nil {
		t.Fatal("listener.crt holds no PEM block")
	}
	certificate, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var token string
	var issuer *x509.Certificate
	for _, extension := range certificate.Extensions {
		switch {
		case extension.Id.Equal(bootstrap.OIDAttestationToken):
			if _, err := asn1.UnmarshalWithParams(extension.Value, &token, "utf8"); err != nil {
				t.Fatal(err)
			}
		case extension.Id.Equal(bootstrap.OIDIssuerCertificate):
			if issuer, err = x509.ParseCertificate(extension.Value); err != nil {
				t.Fatal(err)
			}
		}
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || issuer == nil {
		t.Fatalf("no token or no CA certificate in the certificate: %q", token)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		EnclaveHeldData string `json:"x-ms-sgx-ehd"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	held, err := base64.RawURLEncoding.DecodeString(claims.EnclaveHeldData)
	if err != nil {
		t.Fatal(err)
	}
	return certificate, issuer, held
}

// What a client sees after an attested start (the hook: Prepare, then bootstrap.StartWith): binding version 3 naming
// the seal key, the wrapping key, the served leaf and the CA derived from the released key; after OpenBao reports
// its store, a new token binds it too.
func TestTheListenerAttestsBindingVersion3WithTheSealKeyAndTheStore(t *testing.T) {
	w := newWorld(t)
	w.config.Key, w.config.Previous = w.keyID(versionB), ptr(w.keyID(versionA))
	prepared := w.mustPrepare()
	dir := t.TempDir()
	config := bootstrap.Config{MAAURL: w.maaURL, DNSNames: []string{"vault.example.com"}}
	listener, err := bootstrap.StartWith(config, w.provider, dir, func(string, ...any) {}, prepared.Listener)
	if err != nil {
		t.Fatal(err)
	}
	// Recomputed from what a client has: the certificate served, its CA, the stack's key ids and the thumbprint
	// (checked against the wrapping key in TestPrepareReleasesTheKeyAndWritesTheStaticSealKey).
	expect := func(held []byte, certificate, issuer *x509.Certificate, initialized string, clusterID string) {
		t.Helper()
		leafDigest := sha256.Sum256(certificate.RawSubjectPublicKeyInfo)
		caDigest := sha256.Sum256(issuer.RawSubjectPublicKeyInfo)
		want := fmt.Sprintf(`{"v":3,"purpose":"confidential-vault/openbao-listener","listener_spki_sha256":"%x",`+
			`"ca_spki_sha256":"%x","seal_key_id":"%s","previous_seal_key_id":"%s","release_jwk_thumbprint":"%s",`+
			`"initialized":%s,"cluster_id":"%s"}`, leafDigest, caDigest, w.vault.KeyID(versionB), w.vault.KeyID(versionA),
			prepared.Listener.ReleaseJWKThumbprint, initialized, clusterID)
		if string(held) != want {
			t.Errorf("the token binds\n%s\nwant\n%s", held, want)
		}
		if !issuer.PublicKey.(*ecdsa.PublicKey).Equal(expectedCAKey(t, hsmKeyB, w.vault.KeyID(versionB)).Public()) {
			t.Error("the served CA is not the one derived from the current released key")
		}
	}
	certificate, issuer, held := readServed(t, dir)
	expect(held, certificate, issuer, "false", "")

	const clusterID = "5f0e4c2a-8d1b-4e6f-9a3c-7b2d1e0f4a5b"
	if changed, err := listener.ObserveStore(bootstrap.StoreState{Initialized: true, ClusterID: clusterID}); err != nil || !changed {
		t.Fatalf("ObserveStore: %v, %v", changed, err)
	}
	reissued, reissuedIssuer, reissuedHeld := readServed(t, dir)
	expect(reissuedHeld, reissued, reissuedIssuer, "true", clusterID)
	if !reissued.PublicKey.(*ecdsa.PublicKey).Equal(certificate.PublicKey) || !bytes.Equal(reissuedIssuer.Raw, issuer.Raw) {
		t.Error("a store change must keep the leaf key and the CA certificate")
	}
}

// TestListenerCASameAcrossReplicasAndRestarts: with attested unseal, clients pin one CA file. Two independent
// bootstraps (two replicas, or one replica and its restart: nothing is kept between them) that get the same released
// key present chains that this one file verifies, each with its own leaf; another seal key version (a rotation)
// gives another CA, which the pinned file does not vouch for.
func TestListenerCASameAcrossReplicasAndRestarts(t *testing.T) {
	w := newWorld(t)
	config := bootstrap.Config{MAAURL: w.maaURL, DNSNames: []string{"vault.example.com", "openbao-active.vault.svc"}}
	startReplica := func() (*x509.Certificate, *x509.Certificate) {
		t.Helper()
		replica := *w
		replica.sealDir = t.TempDir() // its own enclave memory
		prepared := replica.mustPrepare()
		dir := t.TempDir()
		if _, err := bootstrap.StartWith(config, w.provider, dir, func(string, ...any) {}, prepared.Listener); err != nil {
			t.Fatal(err)
		}
		certificate, issuer, _ := readServed(t, dir)
		return certificate, issuer
	}
	first, firstCA := startReplica()
	second, secondCA := startReplica()

	// The CA file a client pins after verifying the first replica (scripts/verify.py writes the PEM).
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: firstCA.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	pinnedPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pinnedPEM) {
		t.Fatal("the CA file holds no certificate")
	}
	for name, leaf := range map[string]*x509.Certificate{"first": first, "second": second} {
		for _, host := range config.DNSNames {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
				t.Errorf("the %s replica's chain does not verify for %s against the pinned CA file: %v", name, host, err)
			}
		}
	}
	if first.PublicKey.(*ecdsa.PublicKey).Equal(second.PublicKey) {
		t.Error("two starts share a leaf key: each start must make its own")
	}
	if !bytes.Equal(firstCA.Raw, secondCA.Raw) {
		t.Error("two starts with the same released key serve different CA certificates")
	}

	// A rotation to another key version: another CA, and the old pin does not vouch for its leaves.
	w.config.Key, w.config.Previous = w.keyID(versionB), ptr(w.keyID(versionA))
	rotated, rotatedCA := startReplica()
	if rotatedCA.PublicKey.(*ecdsa.PublicKey).Equal(firstCA.PublicKey) {
		t.Fatal("another seal key version gives the same CA")
	}
	if _, err := rotated.Verify(x509.VerifyOptions{Roots: roots, DNSName: "vault.example.com"}); err == nil {
		t.Error("the CA pinned for one seal key version vouches for a leaf under another")
	}
}
