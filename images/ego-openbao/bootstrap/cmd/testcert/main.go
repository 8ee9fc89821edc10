// Command testcert runs the bootstrap against the fake attestation provider and leaves the listener's files in a
// directory, so that tests of other languages (tests/test_verify.py) check what this code really produces.
// A test tool: the enclave image never builds it.
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"confidential-vault.internal/bootstrap"
	"confidential-vault.internal/bootstrap/cmd/internal/pemkey"
	"confidential-vault.internal/bootstrap/fakemaa"
	"confidential-vault.internal/bootstrap/keyrelease"
)

// options are the flags; every binding field an enclave can bind has one, so that a client test can fake any
// genuine enclave's certificate.
type options struct {
	signingKey, keyID, maaURL, names, claimsFile, out string
	simulation, reissue                               bool
	sealKeyID, previousSealKeyID, releaseThumbprint   string
	caSeed                                            string
	initialized                                       bool
	clusterID                                         string
}

func main() {
	var o options
	flag.StringVar(&o.signingKey, "signing-key", "", "PEM file with the fake provider's RSA signing key (PKCS#8 or PKCS#1)")
	flag.StringVar(&o.keyID, "key-id", "test-signing-key", "kid of the signing key in the provider's JWKS")
	flag.StringVar(&o.maaURL, "maa-url", "", "provider URL: "+bootstrap.EnvMAAURL)
	flag.StringVar(&o.names, "names", "", "subject alternative names: "+bootstrap.EnvListenerNames)
	flag.StringVar(&o.claimsFile, "claims", "", "JSON file of claims every token carries (the SGX measurements)")
	flag.BoolVar(&o.simulation, "simulation", false, "run as with "+bootstrap.EnvSimulation+"=1")
	flag.BoolVar(&o.reissue, "reissue", false, "keep the first certificate as first.crt, then reissue it once")
	flag.StringVar(&o.sealKeyID, "seal-key-id", "", "attested unseal: bind this Key Vault key id ("+keyrelease.EnvSealKeyID+
		") as seal_key_id, as the enclave does after the key release")
	flag.StringVar(&o.previousSealKeyID, "previous-seal-key-id", "", "bind this key id as previous_seal_key_id ("+
		keyrelease.EnvSealPreviousKeyID+"); needs -seal-key-id")
	flag.StringVar(&o.releaseThumbprint, "release-jwk-thumbprint", "", "bind this release_jwk_thumbprint (default with "+
		"-seal-key-id: the thumbprint of a fresh RSA key, as the enclave's wrapping key)")
	flag.StringVar(&o.caSeed, "ca-seed", "", "derive the listener CA key from SHA-512 of this text instead of a fresh key: "+
		"two runs with the same seed share a CA, as replicas with the same released seal key do")
	flag.BoolVar(&o.initialized, "initialized", false, "bind initialized=true, as after OpenBao reports an initialised store")
	flag.StringVar(&o.clusterID, "cluster-id", "", "bind this cluster_id, as after OpenBao reports an unsealed store")
	flag.StringVar(&o.out, "out", "", "directory for listener.key, listener.crt and ca.crt (the CA certificate, PEM)")
	flag.Parse()
	if err := run(o); err != nil {
		log.Fatalf("testcert: %v", err)
	}
}

func run(o options) error {
	if o.out == "" {
		return errors.New("-out is required")
	}
	environment := map[string]string{bootstrap.EnvMAAURL: o.maaURL, bootstrap.EnvListenerNames: o.names}
	if o.simulation {
		environment[bootstrap.EnvSimulation] = "1"
	}
	config, err := bootstrap.ConfigFromEnv(func(name string) string { return environment[name] })
	if err != nil {
		return err
	}
	provider := &fakemaa.Provider{KeyID: o.keyID}
	if !o.simulation {
		if provider.Key, err = pemkey.ReadRSA(o.signingKey); err != nil {
			return err
		}
		if o.claimsFile != "" {
			raw, err := os.ReadFile(o.claimsFile)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(raw, &provider.Claims); err != nil {
				return fmt.Errorf("%s: %w", o.claimsFile, err)
			}
		}
	}
	identity, err := identityFrom(o)
	if err != nil {
		return err
	}
	listener, err := bootstrap.StartWith(config, provider, o.out, log.Printf, identity)
	if err != nil {
		return err
	}
	// The enclave's first certificate binds an uninitialised store until it has read OpenBao's health; here the
	// state comes from the flags and every certificate written binds it.
	if _, err := listener.ObserveStore(bootstrap.StoreState{Initialized: o.initialized, ClusterID: o.clusterID}); err != nil {
		return err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: listener.CACertificate()})
	if err := os.WriteFile(filepath.Join(o.out, "ca.crt"), caPEM, 0o644); err != nil {
		return err
	}
	if !o.reissue {
		return nil
	}
	first, err := os.ReadFile(filepath.Join(o.out, filepath.Base(bootstrap.CertificatePath)))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, "first.crt"), first, 0o644); err != nil {
		return err
	}
	return listener.Reissue()
}

// identityFrom is what keyrelease.Prepare hands the listener (here without a release: the binding is what this
// tool's users check).
func identityFrom(o options) (bootstrap.Identity, error) {
	var identity bootstrap.Identity
	if o.caSeed != "" {
		seed := sha512.Sum512([]byte(o.caSeed))
		key, err := bootstrap.CAKeyFromSeed(seed[:])
		if err != nil {
			return identity, err
		}
		identity.CAKey = key
	}
	if o.sealKeyID == "" {
		if o.previousSealKeyID != "" || o.releaseThumbprint != "" {
			return identity, errors.New("-previous-seal-key-id and -release-jwk-thumbprint need -seal-key-id")
		}
		return identity, nil
	}
	key, err := keyrelease.ParseKeyID(o.sealKeyID)
	if err != nil {
		return identity, fmt.Errorf("-seal-key-id: %w", err)
	}
	identity.SealKeyID = key.String()
	if o.previousSealKeyID != "" {
		previous, err := keyrelease.ParseKeyID(o.previousSealKeyID)
		if err != nil {
			return identity, fmt.Errorf("-previous-seal-key-id: %w", err)
		}
		identity.PreviousSealKeyID = previous.String()
	}
	identity.ReleaseJWKThumbprint = o.releaseThumbprint
	if identity.ReleaseJWKThumbprint == "" {
		// The enclave's wrapping key has keyrelease.WrappingKeyBits; the binding only carries its thumbprint, so a
		// smaller key keeps this tool fast.
		wrappingKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return identity, err
		}
		identity.ReleaseJWKThumbprint = keyrelease.Thumbprint(&wrappingKey.PublicKey)
	}
	return identity, nil
}
