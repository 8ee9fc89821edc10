package keyrelease

import "crypto/rsa"

// WriteSealFilesFor derives the static seal keys from released RSA keys and writes the seal key files into dir, the
// same two steps Prepare takes after a release (deriveKeys, writeSealKeys); previousKey is nil outside a rotation.
// It returns the environment the enclave sets for OpenBao. Only test tools call it (cmd/sealfiles): the enclave gets
// its keys from Key Vault, never from a file.
func WriteSealFilesFor(dir string, key KeyID, released *rsa.PrivateKey, previousKey *KeyID, previousReleased *rsa.PrivateKey) (map[string]string, error) {
	current, err := deriveKeys(key, released)
	if err != nil {
		return nil, err
	}
	defer current.clear()
	var previous *derivedKeys
	if previousKey != nil {
		if previous, err = deriveKeys(*previousKey, previousReleased); err != nil {
			return nil, err
		}
		defer previous.clear()
	}
	return writeSealKeys(dir, current, previous)
}
