package keyrelease

import (
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"confidential-vault.internal/bootstrap"
)

// What the released key becomes. Key Vault Premium releases RSA-HSM (or EC-HSM) keys, not 32-byte symmetric keys,
// so the keys the enclave needs are derived with HKDF-SHA256 (RFC 5869): no salt (the input is a secret with far
// more than 256 bits of entropy), one info string per purpose, versioned: changing a derivation changes the key, so
// it must change the version and, for the seal, the static seal key id (SealKeyDerivation).
const (
	sealKeyInfo = "confidential-vault/openbao/static-seal-key/v1"
	// listenerCAInfo is followed by a newline and the key id: the CA names the key version it comes from, so even
	// two key versions that released the same material (they cannot) would give two CAs.
	listenerCAInfo = "confidential-vault/openbao/listener-ca/v1"
	// StoreIdentityKeyInfo derives the key of the store identity record (../storeidentity).
	StoreIdentityKeyInfo = "confidential-vault/openbao/store-identity/v1"
	derivedKeyBytes      = 32
	// SealKeyDerivation names this derivation in the static seal's key id.
	SealKeyDerivation = "hkdf-sha256-v1"
	// minReleasedKeyBits: smaller RSA keys are refused (Key Vault's RSA-HSM keys are 2048, 3072 or 4096 bits).
	minReleasedKeyBits = 2048
)

// derivedKeys are the keys derived from one released key version.
type derivedKeys struct {
	keyID KeyID
	// seal is the static seal key (AES-256-GCM in OpenBao).
	seal []byte
	// listenerCA signs the listener's per-start leaf certificates; the same for every replica and restart under
	// this key version.
	listenerCA *ecdsa.PrivateKey
	// storeIdentity encrypts the store identity record (AES-256-GCM).
	storeIdentity []byte
}

func (d *derivedKeys) clear() {
	clear(d.seal)
	clear(d.storeIdentity)
}

// releasedKeyMaterial is the HKDF input for an RSA key: its two prime factors, smaller first, each as a 4-byte
// big-endian length and its minimal big-endian bytes. The primes alone determine the key and have exactly one
// encoding, whatever container Key Vault uses (PKCS#1 or PKCS#8) and whichever valid private exponent it exports
// (d mod φ(n) or d mod λ(n)); the DER or d itself would not be canonical.
func releasedKeyMaterial(key *rsa.PrivateKey) ([]byte, error) {
	if len(key.Primes) != 2 {
		return nil, fmt.Errorf("the released RSA key has %d prime factors, want 2", len(key.Primes))
	}
	if bits := key.N.BitLen(); bits < minReleasedKeyBits {
		return nil, fmt.Errorf("the released RSA key has %d bits, want at least %d", bits, minReleasedKeyBits)
	}
	primes := []*big.Int{key.Primes[0], key.Primes[1]}
	if primes[0].Cmp(primes[1]) > 0 {
		primes[0], primes[1] = primes[1], primes[0]
	}
	var material []byte
	for _, prime := range primes {
		bytes := prime.Bytes()
		material = binary.BigEndian.AppendUint32(material, uint32(len(bytes)))
		material = append(material, bytes...)
		clear(bytes)
	}
	return material, nil
}

// deriveKeys derives the seal key, the listener CA key and the store identity key from a released RSA key.
func deriveKeys(keyID KeyID, released *rsa.PrivateKey) (*derivedKeys, error) {
	material, err := releasedKeyMaterial(released)
	if err != nil {
		return nil, err
	}
	defer clear(material)
	keys := &derivedKeys{keyID: keyID}
	if keys.seal, err = hkdf.Key(sha256.New, material, nil, sealKeyInfo, derivedKeyBytes); err != nil {
		return nil, err
	}
	if keys.storeIdentity, err = hkdf.Key(sha256.New, material, nil, StoreIdentityKeyInfo, derivedKeyBytes); err != nil {
		keys.clear()
		return nil, err
	}
	caSeed, err := hkdf.Key(sha256.New, material, nil, ListenerCAInfo(keyID), bootstrap.CAKeySeedBytes)
	if err != nil {
		keys.clear()
		return nil, err
	}
	defer clear(caSeed)
	if keys.listenerCA, err = bootstrap.CAKeyFromSeed(caSeed); err != nil {
		keys.clear()
		return nil, err
	}
	if len(keys.seal) != derivedKeyBytes || len(keys.storeIdentity) != derivedKeyBytes {
		keys.clear()
		return nil, errors.New("HKDF returned a key of the wrong length")
	}
	return keys, nil
}

// ListenerCAInfo is the HKDF info of the listener CA key seed for one key version: the versioned label, a newline
// and the key id.
func ListenerCAInfo(keyID KeyID) string {
	return listenerCAInfo + "\n" + keyID.String()
}

// StaticSealKeyID is the static seal's key id for a Key Vault key version: OpenBao requires the id to change
// whenever the key does, so it names the key version and the derivation.
func StaticSealKeyID(keyID KeyID) string {
	return keyID.String() + "#" + SealKeyDerivation
}
