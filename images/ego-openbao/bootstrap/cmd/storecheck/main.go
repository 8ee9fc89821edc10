// Command storecheck runs the enclave's store identity check once against a running OpenBao, with a record file in
// place of the Kubernetes Secret and RSA keys given as PEM files in place of the keys Key Vault releases, so that
// integration tests can drive the real `bao server` through what this code really decides. A test tool: the enclave
// image never builds it.
//
// It reads sys/health (bootstrap.LoopbackHealthURL's query) over TLS pinned to -ca-file, derives the store identity
// keys as the enclave does (keyrelease), runs storeidentity.Checker once, and exits 0 when the store is accepted
// (recording it on first sight, re-encrypting a record under the previous key), 2 when it is refused, 1 on any other
// error (nothing decided). The last line on stdout says which: "accepted …", "refused: …".
package main

import (
	"context"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"strings"
	"time"

	"confidential-vault.internal/bootstrap"
	"confidential-vault.internal/bootstrap/cmd/internal/pemkey"
	"confidential-vault.internal/bootstrap/keyrelease"
	"confidential-vault.internal/bootstrap/storeidentity"
)

func main() {
	address := flag.String("address", "https://127.0.0.1:8200", "OpenBao's listener (the enclave uses "+bootstrap.LoopbackHealthURL+")")
	caFile := flag.String("ca-file", "", "PEM CA certificate the listener's certificate must chain to (the listener CA)")
	keyID := flag.String("key-id", "", "the Key Vault key id ("+keyrelease.EnvSealKeyID+")")
	releasedKey := flag.String("released-key", "", "PEM file with the RSA key Key Vault would release for -key-id")
	previousKeyID := flag.String("previous-key-id", "", "during a rotation: "+keyrelease.EnvSealPreviousKeyID)
	previousReleasedKey := flag.String("previous-released-key", "", "PEM file with the RSA key of -previous-key-id")
	recordFile := flag.String("record", "", "the store identity record file (the enclave's Secret "+storeidentity.SecretName+")")
	flag.Parse()
	logger := log.New(os.Stderr, "storecheck: ", 0)
	err := run(*address, *caFile, *keyID, *releasedKey, *previousKeyID, *previousReleasedKey, *recordFile, logger.Printf)
	switch {
	case errors.Is(err, bootstrap.ErrStoreRefused):
		fmt.Printf("refused: %v\n", err)
		os.Exit(2)
	case err != nil:
		logger.Fatalf("%v", err)
	}
}

func run(address, caFile, keyID, releasedKey, previousKeyID, previousReleasedKey, recordFile string, logf func(string, ...any)) error {
	if caFile == "" || keyID == "" || releasedKey == "" || recordFile == "" {
		return errors.New("-ca-file, -key-id, -released-key and -record are required")
	}
	if (previousKeyID == "") != (previousReleasedKey == "") {
		return errors.New("-previous-key-id and -previous-released-key go together")
	}
	base, err := url.Parse(address)
	if err != nil || base.Scheme != "https" || base.Host == "" || strings.Trim(base.Path, "/") != "" {
		return fmt.Errorf("-address %q: want https://host:port", address)
	}
	_, query, _ := strings.Cut(bootstrap.LoopbackHealthURL, "?")
	healthURL := "https://" + base.Host + "/v1/sys/health?" + query

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
	keys, err := keyrelease.StoreIdentityKeysFor(key, released, previous, previousReleased)
	if err != nil {
		return err
	}

	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(caPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return fmt.Errorf("%s: no PEM certificate", caFile)
	}
	// The enclave also pins its own leaf key; a tool outside it has only the CA.
	client, err := bootstrap.PinnedHealthClient(block.Bytes, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	state, err := bootstrap.ReadStoreState(ctx, client, healthURL)
	if err != nil {
		return err
	}
	checker := &storeidentity.Checker{Store: storeidentity.FileStore{Path: recordFile}, Keys: keys, Logf: logf}
	if err := checker.Check(ctx, state); err != nil {
		return err
	}
	fmt.Printf("accepted: initialized=%t cluster_id=%q\n", state.Initialized, state.ClusterID)
	return nil
}
