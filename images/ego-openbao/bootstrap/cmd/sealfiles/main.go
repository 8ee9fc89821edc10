// Command sealfiles writes the static seal's key files the way the enclave does after a key release, from RSA keys
// given as PEM files in place of the keys Key Vault releases, and prints the environment the enclave sets for OpenBao
// (NAME=value lines, sorted), so that tests can start the real OpenBao with what this code really produces.
// A test tool: the enclave image never builds it.
package main

import (
	"crypto/rsa"
	"errors"
	"flag"
	"fmt"
	"log"
	"maps"
	"slices"

	"confidential-vault.internal/bootstrap/cmd/internal/pemkey"
	"confidential-vault.internal/bootstrap/keyrelease"
)

func main() {
	keyID := flag.String("key-id", "", "the Key Vault key id ("+keyrelease.EnvSealKeyID+")")
	releasedKey := flag.String("released-key", "", "PEM file with the RSA key Key Vault would release for -key-id")
	previousKeyID := flag.String("previous-key-id", "", "during a rotation: "+keyrelease.EnvSealPreviousKeyID)
	previousReleasedKey := flag.String("previous-released-key", "", "PEM file with the RSA key of -previous-key-id")
	out := flag.String("out", "", "directory for seal.key and previous-seal.key (the enclave's "+keyrelease.SealDir+")")
	flag.Parse()
	if err := run(*keyID, *releasedKey, *previousKeyID, *previousReleasedKey, *out); err != nil {
		log.Fatalf("sealfiles: %v", err)
	}
}

func run(keyID, releasedKey, previousKeyID, previousReleasedKey, out string) error {
	if out == "" || keyID == "" || releasedKey == "" {
		return errors.New("-out, -key-id and -released-key are required")
	}
	if (previousKeyID == "") != (previousReleasedKey == "") {
		return errors.New("-previous-key-id and -previous-released-key go together")
	}
	key, err := keyrelease.ParseKeyID(keyID)
	if err != nil {
		return fmt.Errorf("-key-id: %w", err)
	}
	released, err := pemkey.ReadRSA(releasedKey)
	if err != nil {
		return err
	}
	var previous *keyrelease.KeyID
	var previousReleased *rsa.PrivateKey
	if previousKeyID != "" {
		parsed, err := keyrelease.ParseKeyID(previousKeyID)
		if err != nil {
			return fmt.Errorf("-previous-key-id: %w", err)
		}
		previous = &parsed
		if previousReleased, err = pemkey.ReadRSA(previousReleasedKey); err != nil {
			return err
		}
	}
	env, err := keyrelease.WriteSealFilesFor(out, key, released, previous, previousReleased)
	if err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(env)) {
		fmt.Printf("%s=%s\n", name, env[name])
	}
	return nil
}
