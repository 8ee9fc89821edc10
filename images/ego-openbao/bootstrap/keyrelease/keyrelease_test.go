package keyrelease

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"confidential-vault.internal/bootstrap/fakekeyvault"
)

// expectedMaterial is the released RSA key's input keying material as README.md specifies it: primes ascending, each
// with a 4-byte big-endian length, independently of the code under test.
func expectedMaterial(key *rsa.PrivateKey) []byte {
	p, q := key.Primes[0], key.Primes[1]
	if p.Cmp(q) > 0 {
		p, q = q, p
	}
	var material []byte
	for _, prime := range []*big.Int{p, q} {
		material = binary.BigEndian.AppendUint32(material, uint32(len(prime.Bytes())))
		material = append(material, prime.Bytes()...)
	}
	return material
}

// expectedKey derives a key from a released RSA key as README.md specifies it (primes ascending, each with a 4-byte
// big-endian length; HKDF-SHA256, no salt), independently of the code under test.
func expectedKey(t *testing.T, key *rsa.PrivateKey, info string) []byte {
	t.Helper()
	material := expectedMaterial(key)
	derived, err := hkdf.Key(sha256.New, material, nil, info, 32)
	if err != nil {
		t.Fatal(err)
	}
	return derived
}

func TestPrepareReleasesTheKeyAndWritesTheStaticSealKey(t *testing.T) {
	w := newWorld(t)
	w.generateWrappingKey = true
	prepared := w.mustPrepare()

	// The static seal key: 64 hex digits, no newline, the documented derivation of the released key.
	want := hex.EncodeToString(expectedKey(t, hsmKeyA, "confidential-vault/openbao/static-seal-key/v1"))
	if got := w.readSealFile("seal.key"); got != want {
		t.Errorf("seal.key = %q, want %q (64 hex digits, no newline)", got, want)
	}
	if got := w.readSealFile("previous-seal.key"); got != want {
		t.Errorf("previous-seal.key = %q outside a rotation, want the current key %q", got, want)
	}
	for _, path := range []string{w.sealDir, filepath.Join(w.sealDir, "seal.key")} {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: the group and others must have no access", path, info.Mode())
		}
	}
	entries, _ := os.ReadDir(w.sealDir)
	if len(entries) != 2 {
		t.Errorf("%s holds %d entries, want the two key files only (no temporary files left)", w.sealDir, len(entries))
	}
	keyID := w.vault.KeyID(versionA)
	wantEnv := map[string]string{
		"BAO_STATIC_SEAL_CURRENT_KEY_ID":  keyID + "#hkdf-sha256-v1",
		"BAO_STATIC_SEAL_PREVIOUS_KEY_ID": keyID + "#hkdf-sha256-v1",
		"BAO_STATIC_SEAL_CURRENT_KEY":     "",
		"BAO_STATIC_SEAL_PREVIOUS_KEY":    "",
		"BAO_SEAL_TYPE":                   "",
		"VAULT_SEAL_TYPE":                 "",
	}
	log := strings.Join(w.logs, "\n")
	for _, secret := range []string{want, w.vault.AccessToken, w.vault.FederatedToken} {
		if strings.Contains(log, secret) {
			t.Errorf("the log contains a secret: %s", log)
		}
	}
	if fmt.Sprint(prepared.SealEnv) != fmt.Sprint(wantEnv) {
		t.Errorf("SealEnv = %v, want %v", prepared.SealEnv, wantEnv)
	}

	// The wrapping key the enclave generated itself: RSA-4096, attested as the release target's JSON Web Key Set.
	if len(w.wrappingKeys) != 1 || w.wrappingKeys[0].N.BitLen() != 4096 {
		t.Fatalf("wrapping keys %d, want one of 4096 bits", len(w.wrappingKeys))
	}
	wrappingKey := w.wrappingKeys[0]
	attestations := w.provider.Requests()
	if len(attestations) != 1 || attestations[0].DataType != "JSON" {
		t.Fatalf("attestations %+v, want 1 of runtime data type JSON (the release target; the listener's is the bootstrap's)", attestations)
	}
	bound := w.provider.BoundData()
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(bound[0], &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("attested %s, want a JSON Web Key Set with one key (%v)", bound[0], err)
	}
	jwk := set.Keys[0]
	if jwk["kty"] != "RSA" || jwk["e"] != "AQAB" || jwk["n"] != base64.RawURLEncoding.EncodeToString(wrappingKey.N.Bytes()) ||
		fmt.Sprint(jwk["key_ops"]) != "[encrypt]" {
		t.Errorf("attested JWK %v, want the wrapping key for encryption", jwk)
	}

	// What the services received.
	tokens := w.vault.Requests(fakekeyvault.Token)
	if len(tokens) != 1 {
		t.Fatalf("%d token requests, want 1", len(tokens))
	}
	form := tokens[0].Form
	if form.Get("client_assertion") != w.vault.FederatedToken || form.Get("scope") != "https://vault.azure.net/.default" ||
		form.Get("client_id") != w.vault.ClientID || form.Get("grant_type") != "client_credentials" ||
		form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		t.Errorf("token request form %v: want client credentials with the projected token as jwt-bearer assertion", form)
	}
	releases := w.vault.Requests(fakekeyvault.Release)
	if len(releases) != 1 {
		t.Fatalf("%d release requests, want 1", len(releases))
	}
	release := releases[0]
	nonce, nonceErr := base64.RawURLEncoding.DecodeString(release.Body["nonce"])
	if release.Path != "/keys/openbao-seal/"+versionA+"/release" || release.Query.Get("api-version") != "2025-07-01" ||
		release.Body["enc"] != "RSA_AES_KEY_WRAP_256" || nonceErr != nil || len(nonce) != 16 ||
		release.Authorization != "Bearer "+w.vault.AccessToken {
		t.Errorf("release request %+v: want POST /keys/<name>/<version>/release?api-version=2025-07-01, enc "+
			"RSA_AES_KEY_WRAP_256, a 16-byte nonce and the Entra token", release)
	}
	// Key Vault reads the wrapping key from x-ms-runtime.keys: the token must carry the set there, as JSON.
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(release.Body["target"], ".")[1])
	var target struct {
		Runtime struct {
			Keys []map[string]any `json:"keys"`
		} `json:"x-ms-runtime"`
	}
	if err := json.Unmarshal(payload, &target); err != nil || len(target.Runtime.Keys) != 1 ||
		fmt.Sprint(target.Runtime.Keys[0]) != fmt.Sprint(jwk) {
		t.Errorf("the release target's x-ms-runtime is not the wrapping key's JSON Web Key Set: %s", payload)
	}

	// What the listener binds: the key release's facts and the CA key derived from the released key.
	thumbprint := sha256.Sum256([]byte(`{"e":"AQAB","kty":"RSA","n":"` + base64.RawURLEncoding.EncodeToString(wrappingKey.N.Bytes()) + `"}`))
	if prepared.Listener.SealKeyID != keyID || prepared.Listener.PreviousSealKeyID != "" ||
		prepared.Listener.ReleaseJWKThumbprint != base64.RawURLEncoding.EncodeToString(thumbprint[:]) {
		t.Errorf("listener identity %+v: want seal key %s, no previous key, the wrapping key's thumbprint", prepared.Listener, keyID)
	}
	if !prepared.Listener.CAKey.Equal(expectedCAKey(t, hsmKeyA, keyID)) {
		t.Error("the listener CA key is not the documented derivation of the released key")
	}
	if want := expectedKey(t, hsmKeyA, "confidential-vault/openbao/store-identity/v1"); prepared.StoreIdentityKeys.Previous != nil ||
		prepared.StoreIdentityKeys.Current.SealKeyID != keyID || !bytes.Equal(prepared.StoreIdentityKeys.Current.Secret, want) {
		t.Errorf("store identity keys %v: want the documented derivation under %s only", prepared.StoreIdentityKeys.Current.SealKeyID, keyID)
	}
	if jwk["kid"] != base64.RawURLEncoding.EncodeToString(thumbprint[:]) {
		t.Errorf("the attested JWK's kid %v is not its thumbprint, which the binding names", jwk["kid"])
	}
	if release.TargetKeyID != base64.RawURLEncoding.EncodeToString(thumbprint[:]) {
		t.Errorf("Key Vault wrapped to the key %q, not to the wrapping key the binding names", release.TargetKeyID)
	}
}

// expectedCAKey derives the listener CA key as README.md specifies it, independently of the code under test: HKDF-SHA256
// of the released key's material, info "confidential-vault/openbao/listener-ca/v1\n<key id>", 64 bytes, read as an
// integer c; d = (c mod (n-1)) + 1 (FIPS 186-5 A.2.1); the public point is d·G.
func expectedCAKey(t *testing.T, key *rsa.PrivateKey, keyID string) *ecdsa.PrivateKey {
	t.Helper()
	material := expectedMaterial(key)
	seed, err := hkdf.Key(sha256.New, material, nil, "confidential-vault/openbao/listener-ca/v1\n"+keyID, 64)
	if err != nil {
		t.Fatal(err)
	}
	n := elliptic.P256().Params().N
	d := new(big.Int).SetBytes(seed)
	d.Mod(d, new(big.Int).Sub(n, big.NewInt(1))).Add(d, big.NewInt(1))
	x, y := elliptic.P256().ScalarBaseMult(d.FillBytes(make([]byte, 32)))
	return &ecdsa.PrivateKey{PublicKey: ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}, D: d}
}

func TestRotationUsesBothKeysAndRotatesTheListenerCA(t *testing.T) {
	w := newWorld(t)
	before := w.mustPrepare()

	w.config.Key, w.config.Previous = w.keyID(versionB), ptr(w.keyID(versionA))
	during := w.mustPrepare()
	wantCurrent := hex.EncodeToString(expectedKey(t, hsmKeyB, "confidential-vault/openbao/static-seal-key/v1"))
	wantPrevious := hex.EncodeToString(expectedKey(t, hsmKeyA, "confidential-vault/openbao/static-seal-key/v1"))
	if w.readSealFile("seal.key") != wantCurrent || w.readSealFile("previous-seal.key") != wantPrevious {
		t.Error("during a rotation seal.key must hold the new version's key and previous-seal.key the old one's")
	}
	if during.SealEnv["BAO_STATIC_SEAL_CURRENT_KEY_ID"] != w.vault.KeyID(versionB)+"#hkdf-sha256-v1" ||
		during.SealEnv["BAO_STATIC_SEAL_PREVIOUS_KEY_ID"] != w.vault.KeyID(versionA)+"#hkdf-sha256-v1" {
		t.Errorf("SealEnv %v: want the new version current, the old one previous", during.SealEnv)
	}
	// The CA comes from the current version: a rotation rotates it, and the binding names both versions.
	if during.Listener.CAKey.Equal(before.Listener.CAKey) || !during.Listener.CAKey.Equal(expectedCAKey(t, hsmKeyB, w.vault.KeyID(versionB))) {
		t.Error("during a rotation the listener CA key must be derived from the new version")
	}
	if during.Listener.SealKeyID != w.vault.KeyID(versionB) || during.Listener.PreviousSealKeyID != w.vault.KeyID(versionA) {
		t.Errorf("listener identity names %q and previous %q: want the new and the old version", during.Listener.SealKeyID,
			during.Listener.PreviousSealKeyID)
	}
	previous := during.StoreIdentityKeys.Previous
	if previous == nil || previous.SealKeyID != w.vault.KeyID(versionA) ||
		!bytes.Equal(previous.Secret, expectedKey(t, hsmKeyA, "confidential-vault/openbao/store-identity/v1")) ||
		!bytes.Equal(during.StoreIdentityKeys.Current.Secret, expectedKey(t, hsmKeyB, "confidential-vault/openbao/store-identity/v1")) {
		t.Error("during a rotation the store identity keys must be the new version's and the old version's")
	}
	if n := len(w.vault.Requests(fakekeyvault.Release)); n != 3 {
		t.Errorf("%d releases, want 3 (one before, two during the rotation)", n)
	}

	w.config.Previous = nil
	after := w.mustPrepare()
	if !after.Listener.CAKey.Equal(during.Listener.CAKey) || after.Listener.PreviousSealKeyID != "" || after.StoreIdentityKeys.Previous != nil {
		t.Error("after the rotation the same CA must come from the new version alone, with no previous key named")
	}
}

// Prepare clears the derived keys it does not hand on; what it hands on must survive that.
func TestPreparedStoreIdentityKeysOutliveTheRelease(t *testing.T) {
	w := newWorld(t)
	prepared := w.mustPrepare()
	if bytes.Equal(prepared.StoreIdentityKeys.Current.Secret, make([]byte, 32)) {
		t.Fatal("the store identity key handed on was cleared with the release's keys")
	}
}

func ptr[T any](v T) *T { return &v }
