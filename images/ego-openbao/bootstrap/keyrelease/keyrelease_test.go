package keyrelease

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
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

// expectedKey derives a key from a released RSA key as README.md specifies it (primes ascending, each with a 4-byte
// big-endian length; HKDF-SHA256, no salt), independently of the code under test.
func expectedKey(t *testing.T, key *rsa.PrivateKey, info string) []byte {
	t.Helper()
	p, q := key.Primes[0], key.Primes[1]
	if p.Cmp(q) > 0 {
		p, q = q, p
	}
	var material []byte
	for _, prime := range []*big.Int{p, q} {
		material = binary.BigEndian.AppendUint32(material, uint32(len(prime.Bytes())))
		material = append(material, prime.Bytes()...)
	}
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

	// The listener binding, version 2, byte for byte.
	spki, err := x509.MarshalPKIXPublicKey(&prepared.ListenerKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	spkiDigest := sha256.Sum256(spki)
	thumbprint := sha256.Sum256([]byte(`{"e":"AQAB","kty":"RSA","n":"` + base64.RawURLEncoding.EncodeToString(wrappingKey.N.Bytes()) + `"}`))
	wantBinding := fmt.Sprintf(`{"v":2,"purpose":"confidential-vault/openbao-listener","listener_spki_sha256":"%x",`+
		`"seal_key_id":"%s","release_jwk_thumbprint":"%s"}`, spkiDigest, keyID, base64.RawURLEncoding.EncodeToString(thumbprint[:]))
	if string(prepared.ListenerBinding) != wantBinding {
		t.Errorf("binding\n%s\nwant\n%s", prepared.ListenerBinding, wantBinding)
	}
	if jwk["kid"] != base64.RawURLEncoding.EncodeToString(thumbprint[:]) {
		t.Errorf("the attested JWK's kid %v is not its thumbprint, which the binding names", jwk["kid"])
	}
	if release.TargetKeyID != base64.RawURLEncoding.EncodeToString(thumbprint[:]) {
		t.Errorf("Key Vault wrapped to the key %q, not to the wrapping key the binding names", release.TargetKeyID)
	}
}

func TestListenerKeyStaysAcrossRestartsAndNeverLeavesTheEnclaveInClear(t *testing.T) {
	w := newWorld(t)
	first := w.mustPrepare()
	second := w.mustPrepare()
	if !first.ListenerKey.Equal(second.ListenerKey) {
		t.Fatal("the listener key changed across a restart")
	}
	if !bytes.Equal(first.ListenerBinding, second.ListenerBinding) {
		t.Errorf("the binding changed across a restart with the same key and wrapping key:\n%s\n%s", first.ListenerBinding, second.ListenerBinding)
	}
	stored, err := os.ReadFile(w.store)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(first.ListenerKey)
	scalar := first.ListenerKey.D.Bytes()
	for _, secret := range [][]byte{der, scalar, []byte(hex.EncodeToString(scalar)), []byte(base64.StdEncoding.EncodeToString(der))} {
		if bytes.Contains(stored, secret) {
			t.Fatal("the stored listener key file contains the private key in clear")
		}
	}
	var store map[string]any
	if err := json.Unmarshal(stored, &store); err != nil || store["seal_key_id"] != w.vault.KeyID(versionA) || store["v"] != 1.0 {
		t.Errorf("store %s: want version 1 under %s (%v)", stored, w.vault.KeyID(versionA), err)
	}
	// A store under the other derived key cannot be opened with this one: the key really protects it.
	other := &derivedKeys{keyID: w.keyID(versionA), listenerStore: expectedKey(t, hsmKeyB, "confidential-vault/openbao/listener-key-store/v1")}
	current := &derivedKeys{keyID: w.keyID(versionA), listenerStore: expectedKey(t, hsmKeyA, "confidential-vault/openbao/listener-key-store/v1")}
	if _, _, err := loadListenerKey(w.store, other, nil); err == nil {
		t.Error("the listener key store opened with a key derived from another released key")
	}
	if key, _, err := loadListenerKey(w.store, current, nil); err != nil || !key.Equal(first.ListenerKey) {
		t.Errorf("the store does not open with the documented derivation of the released key: %v", err)
	}
}

func TestRotationUsesBothKeysAndMovesTheListenerKey(t *testing.T) {
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
	if !during.ListenerKey.Equal(before.ListenerKey) {
		t.Error("the rotation replaced the listener key; it must be re-encrypted, not replaced")
	}
	if !strings.Contains(string(during.ListenerBinding), `"seal_key_id":"`+w.vault.KeyID(versionB)+`"`) {
		t.Errorf("binding %s does not name the new version", during.ListenerBinding)
	}
	if n := len(w.vault.Requests(fakekeyvault.Release)); n != 3 {
		t.Errorf("%d releases, want 3 (one before, two during the rotation)", n)
	}

	w.config.Previous = nil
	after := w.mustPrepare()
	if !after.ListenerKey.Equal(before.ListenerKey) {
		t.Error("after the rotation the listener key store does not open with the new version alone")
	}
}

func TestUnusableListenerKeyStoreIsReplacedWithAWarning(t *testing.T) {
	cases := map[string]func(t *testing.T, w *world){
		"altered ciphertext": func(t *testing.T, w *world) {
			var store map[string]any
			content, _ := os.ReadFile(w.store)
			json.Unmarshal(content, &store)
			ciphertext, _ := base64.StdEncoding.DecodeString(store["ciphertext"].(string))
			ciphertext[0] ^= 1
			store["ciphertext"] = ciphertext
			writeJSONFile(t, w.store, store)
		},
		"under another vault's key": func(t *testing.T, w *world) {
			var store map[string]any
			content, _ := os.ReadFile(w.store)
			json.Unmarshal(content, &store)
			store["seal_key_id"] = "https://other.vault.azure.net/keys/openbao-seal/" + versionA
			writeJSONFile(t, w.store, store)
		},
		"not a store": func(t *testing.T, w *world) {
			os.WriteFile(w.store, []byte("garbage"), 0o600)
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			first := w.mustPrepare()
			damage(t, w)
			w.logs = nil
			second := w.mustPrepare()
			if second.ListenerKey.Equal(first.ListenerKey) {
				t.Fatal("the damaged store still yielded the old key")
			}
			if !strings.Contains(strings.Join(w.logs, "\n"), "WARNING: creating a new listener key") {
				t.Errorf("no warning logged: %q", w.logs)
			}
			third := w.mustPrepare()
			if !third.ListenerKey.Equal(second.ListenerKey) {
				t.Error("the new listener key was not stored")
			}
		})
	}
}

func writeJSONFile(t *testing.T, path string, value any) {
	t.Helper()
	content, err := json.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

// The listener key the store holds is an ECDSA P-256 key, as the bootstrap's certificates expect.
func TestListenerKeyIsP256(t *testing.T) {
	w := newWorld(t)
	prepared := w.mustPrepare()
	var key *ecdsa.PrivateKey = prepared.ListenerKey
	if key.Curve.Params().Name != "P-256" {
		t.Errorf("listener key on %s, want P-256", key.Curve.Params().Name)
	}
}
