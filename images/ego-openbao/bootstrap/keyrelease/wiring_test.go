package keyrelease

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
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

// What a client sees after an attested start: the listener certificate's token binds version 2, naming the seal key
// this enclave unseals with and the listener key it serves (the hook: Prepare, then bootstrap.StartWith).
func TestTheListenerAttestsBindingVersion2WithTheSealKey(t *testing.T) {
	w := newWorld(t)
	prepared := w.mustPrepare()
	dir := t.TempDir()
	config := bootstrap.Config{MAAURL: w.maaURL, DNSNames: []string{"vault.example.com"}}
	if _, err := bootstrap.StartWith(config, w.provider, dir, func(string, ...any) {}, bootstrap.Identity{
		Key: prepared.ListenerKey, Binding: prepared.ListenerBinding,
	}); err != nil {
		t.Fatal(err)
	}

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
	if !prepared.ListenerKey.PublicKey.Equal(certificate.PublicKey) {
		t.Fatal("the certificate does not carry the kept listener key")
	}
	var token string
	for _, extension := range certificate.Extensions {
		if extension.Id.Equal(bootstrap.OIDAttestationToken) {
			if _, err := asn1.UnmarshalWithParams(extension.Value, &token, "utf8"); err != nil {
				t.Fatal(err)
			}
		}
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("no token in the certificate: %q", token)
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
	// Recomputed from what a client has: the certificate served and the stack's key id.
	spkiDigest := sha256.Sum256(certificate.RawSubjectPublicKeyInfo)
	var binding map[string]any
	if err := json.Unmarshal(held, &binding); err != nil {
		t.Fatal(err)
	}
	if binding["v"] != float64(2) || binding["seal_key_id"] != w.vault.KeyID(versionA) ||
		binding["listener_spki_sha256"] != hex.EncodeToString(spkiDigest[:]) ||
		binding["purpose"] != "confidential-vault/openbao-listener" || len(binding) != 5 {
		t.Errorf("the listener token binds %s: want version 2 naming %s and the served key", held, w.vault.KeyID(versionA))
	}
	if string(held) != string(prepared.ListenerBinding) {
		t.Errorf("the token binds %s, not the binding Prepare made (%s)", held, prepared.ListenerBinding)
	}
}

func TestStartWithRefusesABindingOfAnotherKey(t *testing.T) {
	w := newWorld(t)
	first := w.mustPrepare()
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ListenerBindingFor(&otherKey.PublicKey, w.keyID(versionA), &testWrappingKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_, err = bootstrap.StartWith(bootstrap.Config{MAAURL: w.maaURL, DNSNames: []string{"vault.example.com"}}, w.provider,
		t.TempDir(), func(string, ...any) {}, bootstrap.Identity{Key: first.ListenerKey, Binding: other})
	if err == nil || !strings.Contains(err.Error(), "does not name the listener key") {
		t.Fatalf("error = %v, want a refusal of a binding for another key", err)
	}
}
