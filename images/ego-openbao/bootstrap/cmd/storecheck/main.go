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
	released := pemkey.RegisterReleasedFlags(flag.CommandLine)
	recordFile := flag.String("record", "", "the store identity record file (the enclave's Secret "+storeidentity.SecretName+")")
	flag.Parse()
	logger := log.New(os.Stderr, "storecheck: ", 0)
	err := run(*address, *caFile, released, *recordFile, logger.Printf)
	switch {
	case errors.Is(err, bootstrap.ErrStoreRefused):
		fmt.Printf("refused: %v\n", err)
		os.Exit(2)
	case err != nil:
		logger.Fatalf("%v", err)
	}
}

func run(address, caFile string, flags pemkey.ReleasedFlags, recordFile string, logf func(string, ...any)) error {
	if caFile == "" || recordFile == "" {
		return errors.New("-ca-file and -record are required")
	}
	base, err := url.Parse(address)
	if err != nil || base.Scheme != "https" || base.Host == "" || strings.Trim(base.Path, "/") != "" {
		return fmt.Errorf("-address %q: want https://host:port", address)
	}
	_, query, _ := strings.Cut(bootstrap.LoopbackHealthURL, "?")
	healthURL := "https://" + base.Host + "/v1/sys/health?" + query

	released, err := flags.Load()
	if err != nil {
		return err
	}
	keys, err := keyrelease.StoreIdentityKeysFor(released.Key, released.Material, released.Previous, released.PreviousMaterial)
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
