// Command sealfiles writes the static seal's key files the way the enclave does after a key release, from RSA keys
// given as PEM files in place of the keys Key Vault releases, and prints the environment the enclave sets for OpenBao
// (NAME=value lines, sorted), so that tests can start the real OpenBao with what this code really produces.
// A test tool: the enclave image never builds it.
package main

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
	"maps"
	"os"
	"slices"

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
	released, err := readRSAKey(releasedKey)
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
		if previousReleased, err = readRSAKey(previousReleasedKey); err != nil {
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

func readRSAKey(path string) (*rsa.PrivateKey, error) {
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
