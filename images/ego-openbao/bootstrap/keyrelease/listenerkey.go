package keyrelease

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ListenerKeyStorePath keeps the listener private key across restarts, so clients verify and pin once per key, not
// once per restart. It lies on the data volume (a hostfs mount): the host sees only AES-256-GCM ciphertext under a
// key derived from the released key, with the seal key id as associated data.
const ListenerKeyStorePath = "/openbao/data/.cv/listener-key.enc"

const (
	listenerStoreVersion   = 1
	listenerStoreAADPrefix = "confidential-vault/openbao/listener-key-store/v1\n"
)

// listenerKeyStore is the file's JSON. The seal key id says which released key version encrypted it, so a rotation
// can decrypt with the previous version and re-encrypt with the new one.
type listenerKeyStore struct {
	Version    int    `json:"v"`
	SealKeyID  string `json:"seal_key_id"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

// loadOrCreateListenerKey returns the stored listener key, or a new one (stored) when there is none or the stored
// one cannot be used: encrypted under a key version that is neither current nor previous, or altered. A new key
// costs clients a new verification, never a secret: the listener key protects connections, not stored data.
func loadOrCreateListenerKey(path string, current, previous *derivedKeys, logf func(string, ...any)) (*ecdsa.PrivateKey, error) {
	key, storedUnder, err := loadListenerKey(path, current, previous)
	switch {
	case err == nil && storedUnder == current:
		logf("listener key loaded from %s", path)
		return key, nil
	case err == nil:
		logf("listener key loaded from %s (encrypted under %s), re-encrypting it under %s", path, storedUnder.keyID, current.keyID)
	case errors.Is(err, os.ErrNotExist):
		logf("no listener key in %s yet: creating one", path)
		key = nil
	default:
		logf("WARNING: creating a new listener key, clients must verify it again: %v", err)
		key = nil
	}
	if key == nil {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, fmt.Errorf("generating the listener key: %w", err)
		}
	}
	if err := storeListenerKey(path, key, current); err != nil {
		return nil, err
	}
	return key, nil
}

func listenerStoreAAD(keyID KeyID) []byte {
	return []byte(listenerStoreAADPrefix + keyID.String())
}

func loadListenerKey(path string, current, previous *derivedKeys) (*ecdsa.PrivateKey, *derivedKeys, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var store listenerKeyStore
	if err := json.Unmarshal(content, &store); err != nil || store.Version != listenerStoreVersion {
		return nil, nil, fmt.Errorf("%s is not a version %d listener key store", path, listenerStoreVersion)
	}
	keys := current
	if store.SealKeyID != current.keyID.String() {
		if previous == nil || store.SealKeyID != previous.keyID.String() {
			return nil, nil, fmt.Errorf("%s is encrypted under %q, which is neither %s nor %s", path, store.SealKeyID,
				EnvSealKeyID, EnvSealPreviousKeyID)
		}
		keys = previous
	}
	gcm, err := newGCM(keys.listenerStore)
	if err != nil {
		return nil, nil, err
	}
	if len(store.Nonce) != gcm.NonceSize() {
		return nil, nil, fmt.Errorf("%s: a nonce of %d bytes, want %d", path, len(store.Nonce), gcm.NonceSize())
	}
	der, err := gcm.Open(nil, store.Nonce, store.Ciphertext, listenerStoreAAD(keys.keyID))
	if err != nil {
		return nil, nil, fmt.Errorf("%s does not decrypt with the key derived from %s: %w", path, keys.keyID, err)
	}
	defer clear(der)
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: the decrypted listener key: %w", path, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, nil, fmt.Errorf("%s: the decrypted listener key is not an ECDSA P-256 key", path)
	}
	return key, keys, nil
}

func storeListenerKey(path string, key *ecdsa.PrivateKey, keys *derivedKeys) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding the listener key: %w", err)
	}
	defer clear(der)
	gcm, err := newGCM(keys.listenerStore)
	if err != nil {
		return err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	content, err := json.Marshal(listenerKeyStore{
		Version:    listenerStoreVersion,
		SealKeyID:  keys.keyID.String(),
		Nonce:      nonce,
		Ciphertext: gcm.Seal(nil, nonce, der, listenerStoreAAD(keys.keyID)),
	})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	return writeFileAtomically(path, content, 0o600)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
