package keyrelease

import (
	"crypto/rsa"

	"confidential-vault.internal/bootstrap/storeidentity"
)

// storeIdentityKeys copies the store identity keys out of the derived keys, which Prepare clears on return.
func storeIdentityKeys(current, previous *derivedKeys) storeidentity.Keys {
	keys := storeidentity.Keys{Current: storeidentity.Key{
		SealKeyID: current.keyID.String(), Secret: append([]byte(nil), current.storeIdentity...),
	}}
	if previous != nil {
		keys.Previous = &storeidentity.Key{
			SealKeyID: previous.keyID.String(), Secret: append([]byte(nil), previous.storeIdentity...),
		}
	}
	return keys
}

// StoreIdentityKeysFor derives the store identity keys from released RSA keys, as Prepare does after a release;
// previousKey is nil outside a rotation. Only test tools call it (cmd/storecheck): the enclave gets its keys from Key
// Vault, never from a file.
func StoreIdentityKeysFor(key KeyID, released *rsa.PrivateKey, previousKey *KeyID, previousReleased *rsa.PrivateKey) (storeidentity.Keys, error) {
	current, err := deriveKeys(key, released)
	if err != nil {
		return storeidentity.Keys{}, err
	}
	defer current.clear()
	var previous *derivedKeys
	if previousKey != nil {
		if previous, err = deriveKeys(*previousKey, previousReleased); err != nil {
			return storeidentity.Keys{}, err
		}
		defer previous.clear()
	}
	return storeIdentityKeys(current, previous), nil
}
