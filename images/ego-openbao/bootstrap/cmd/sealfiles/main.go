// Command sealfiles writes the static seal's key files the way the enclave does after a key release, from RSA keys
// given as PEM files in place of the keys Key Vault releases, and prints the environment the enclave sets for OpenBao
// (NAME=value lines, sorted), so that tests can start the real OpenBao with what this code really produces.
// A test tool: the enclave image never builds it.
package main

import (
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
	released := pemkey.RegisterReleasedFlags(flag.CommandLine)
	out := flag.String("out", "", "directory for seal.key and previous-seal.key (the enclave's "+keyrelease.SealDir+")")
	flag.Parse()
	if err := run(released, *out); err != nil {
		log.Fatalf("sealfiles: %v", err)
	}
}

func run(flags pemkey.ReleasedFlags, out string) error {
	if out == "" {
		return errors.New("-out is required")
	}
	released, err := flags.Load()
	if err != nil {
		return err
	}
	env, err := keyrelease.WriteSealFilesFor(out, released.Key, released.Material, released.Previous, released.PreviousMaterial)
	if err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(env)) {
		fmt.Printf("%s=%s\n", name, env[name])
	}
	return nil
}
