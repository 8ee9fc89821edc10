// Package pemkey reads the RSA private keys the test tools take as "released" Key Vault keys, and the flags that name them.
package pemkey

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"

	"confidential-vault.internal/bootstrap/keyrelease"
)

// ReadRSA reads an RSA private key from a PEM file, PKCS#1 or PKCS#8.
func ReadRSA(path string) (*rsa.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	if key, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return key, nil
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	key, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA key", path)
	}
	return key, nil
}

// ReleasedFlags are the flags of the test tools that stand in for a Key Vault release: the key id with the RSA key
// Key Vault would release for it, and during a rotation the previous pair.
type ReleasedFlags struct {
	keyID, releasedKey, previousKeyID, previousReleasedKey *string
}

// RegisterReleasedFlags declares -key-id, -released-key, -previous-key-id and -previous-released-key.
func RegisterReleasedFlags(flags *flag.FlagSet) ReleasedFlags {
	return ReleasedFlags{
		keyID:               flags.String("key-id", "", "the Key Vault key id ("+keyrelease.EnvSealKeyID+")"),
		releasedKey:         flags.String("released-key", "", "PEM file with the RSA key Key Vault would release for -key-id"),
		previousKeyID:       flags.String("previous-key-id", "", "during a rotation: "+keyrelease.EnvSealPreviousKeyID),
		previousReleasedKey: flags.String("previous-released-key", "", "PEM file with the RSA key of -previous-key-id"),
	}
}

// Released is what the flags name, parsed and read: the key id and its key, and the previous pair or nils.
type Released struct {
	Key              keyrelease.KeyID
	Material         *rsa.PrivateKey
	Previous         *keyrelease.KeyID
	PreviousMaterial *rsa.PrivateKey
}

// Load parses the key ids as the enclave does (keyrelease.ParseKeyID) and reads the PEM files.
func (f ReleasedFlags) Load() (Released, error) {
	var released Released
	if *f.keyID == "" || *f.releasedKey == "" {
		return released, errors.New("-key-id and -released-key are required")
	}
	if (*f.previousKeyID == "") != (*f.previousReleasedKey == "") {
		return released, errors.New("-previous-key-id and -previous-released-key go together")
	}
	var err error
	if released.Key, err = keyrelease.ParseKeyID(*f.keyID); err != nil {
		return released, fmt.Errorf("-key-id: %w", err)
	}
	if released.Material, err = ReadRSA(*f.releasedKey); err != nil {
		return released, err
	}
	if *f.previousKeyID != "" {
		previous, err := keyrelease.ParseKeyID(*f.previousKeyID)
		if err != nil {
			return released, fmt.Errorf("-previous-key-id: %w", err)
		}
		released.Previous = &previous
		if released.PreviousMaterial, err = ReadRSA(*f.previousReleasedKey); err != nil {
			return released, err
		}
	}
	return released, nil
}
