// Package storeidentity keeps the enclave from silently serving a store other than the one it has served before
// (attested unseal only). After OpenBao reports an initialised, unsealed store, the enclave records the store's
// cluster_id, AES-256-GCM-encrypted under a key derived from the released seal key, where it survives restarts (a
// Kubernetes Secret: kube.go). On a later start a store that is uninitialised, or has another cluster_id, while a
// record decrypts, is refused (check.go). The record lives on the host's side: the host can delete it or keep an old
// one, never forge one. Defence in depth: the client's pin on cluster_id (scripts/verify.py) is the guarantee.
// README.md in ../ and ../keyrelease has the design and its limits.
package storeidentity

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
)

// Key is the store identity key derived from one released seal key version (keyrelease/derive.go).
type Key struct {
	// SealKeyID names the seal key version the secret comes from.
	SealKeyID string
	// Secret is the AES-256 key: HKDF-SHA256 of the released key, info "confidential-vault/openbao/store-identity/v1".
	Secret []byte
}

// Keys are the keys a record may be under: the current seal key version's and, during a rotation, the previous one's.
type Keys struct {
	Current  Key
	Previous *Key
}

const (
	recordVersion = 1
	aadPrefix     = "confidential-vault/openbao/store-identity/v1\n"
)

// record is the stored JSON. The seal key id says which key version encrypted it; it is also the associated data,
// so a record cannot be relabelled to another version.
type record struct {
	Version    int    `json:"v"`
	SealKeyID  string `json:"seal_key_id"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

// Seal encrypts a cluster_id into a record under key.
func Seal(key Key, clusterID string) ([]byte, error) {
	gcm, err := newGCM(key.Secret)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return json.Marshal(record{
		Version:    recordVersion,
		SealKeyID:  key.SealKeyID,
		Nonce:      nonce,
		Ciphertext: gcm.Seal(nil, nonce, []byte(clusterID), []byte(aadPrefix+key.SealKeyID)),
	})
}

// Open decrypts a record with whichever of keys it names and returns the cluster_id and the key that opened it. An
// error means the record is unusable (not a record, under a key version that is neither current nor previous, or
// altered): the check treats that as no record.
func Open(keys Keys, content []byte) (string, Key, error) {
	var stored record
	if err := json.Unmarshal(content, &stored); err != nil || stored.Version != recordVersion {
		return "", Key{}, fmt.Errorf("not a version %d store identity record", recordVersion)
	}
	key := keys.Current
	if stored.SealKeyID != key.SealKeyID {
		if keys.Previous == nil || stored.SealKeyID != keys.Previous.SealKeyID {
			return "", Key{}, fmt.Errorf("the record is under the seal key %q, neither the current nor the previous one", stored.SealKeyID)
		}
		key = *keys.Previous
	}
	gcm, err := newGCM(key.Secret)
	if err != nil {
		return "", Key{}, err
	}
	if len(stored.Nonce) != gcm.NonceSize() {
		return "", Key{}, fmt.Errorf("a nonce of %d bytes, want %d", len(stored.Nonce), gcm.NonceSize())
	}
	plaintext, err := gcm.Open(nil, stored.Nonce, stored.Ciphertext, []byte(aadPrefix+key.SealKeyID))
	if err != nil {
		return "", Key{}, fmt.Errorf("the record does not decrypt with the key derived from %s", key.SealKeyID)
	}
	return string(plaintext), key, nil
}

func newGCM(secret []byte) (cipher.AEAD, error) {
	if len(secret) != 32 {
		return nil, errors.New("a store identity key must be 32 bytes")
	}
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
