// Command testcert runs the bootstrap against the fake attestation provider and leaves the listener's files in a
// directory, so that tests of other languages (tests/test_verify.py) check what this code really produces.
// A test tool: the enclave image never builds it.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"confidential-vault.internal/bootstrap"
	"confidential-vault.internal/bootstrap/fakemaa"
	"confidential-vault.internal/bootstrap/keyrelease"
)

func main() {
	signingKey := flag.String("signing-key", "", "PEM file with the fake provider's RSA signing key (PKCS#8 or PKCS#1)")
	keyID := flag.String("key-id", "test-signing-key", "kid of the signing key in the provider's JWKS")
	maaURL := flag.String("maa-url", "", "provider URL: "+bootstrap.EnvMAAURL)
	names := flag.String("names", "", "subject alternative names: "+bootstrap.EnvListenerNames)
	claimsFile := flag.String("claims", "", "JSON file of claims every token carries (the SGX measurements)")
	simulation := flag.Bool("simulation", false, "run as with "+bootstrap.EnvSimulation+"=1")
	reissue := flag.Bool("reissue", false, "keep the first certificate as first.crt, then reissue it once")
	sealKeyID := flag.String("seal-key-id", "", "attested unseal: bind this Key Vault key id ("+keyrelease.EnvSealKeyID+
		") into the listener's attestation (binding version 2), as the enclave does after the key release")
	out := flag.String("out", "", "directory for listener.key and listener.crt")
	flag.Parse()
	if err := run(*signingKey, *keyID, *maaURL, *names, *claimsFile, *sealKeyID, *simulation, *reissue, *out); err != nil {
		log.Fatalf("testcert: %v", err)
	}
}

func run(signingKey, keyID, maaURL, names, claimsFile, sealKeyID string, simulation, reissue bool, out string) error {
	if out == "" {
		return errors.New("-out is required")
	}
	environment := map[string]string{bootstrap.EnvMAAURL: maaURL, bootstrap.EnvListenerNames: names}
	if simulation {
		environment[bootstrap.EnvSimulation] = "1"
	}
	config, err := bootstrap.ConfigFromEnv(func(name string) string { return environment[name] })
	if err != nil {
		return err
	}
	provider := &fakemaa.Provider{KeyID: keyID}
	if !simulation {
		if provider.Key, err = readRSAKey(signingKey); err != nil {
			return err
		}
		if claimsFile != "" {
			raw, err := os.ReadFile(claimsFile)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(raw, &provider.Claims); err != nil {
				return fmt.Errorf("%s: %w", claimsFile, err)
			}
		}
	}
	var listener *bootstrap.Listener
	if sealKeyID == "" {
		listener, err = bootstrap.Start(config, provider, out, log.Printf)
	} else {
		var identity bootstrap.Identity
		if identity, err = attestedUnsealIdentity(sealKeyID); err != nil {
			return err
		}
		listener, err = bootstrap.StartWith(config, provider, out, log.Printf, identity)
	}
	if err != nil {
		return err
	}
	if !reissue {
		return nil
	}
	first, err := os.ReadFile(filepath.Join(out, filepath.Base(bootstrap.CertificatePath)))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "first.crt"), first, 0o644); err != nil {
		return err
	}
	return listener.Reissue()
}

// attestedUnsealIdentity is what keyrelease.Prepare hands the listener: a listener key and binding version 2 for the
// key it released (here without a release: the binding is what this tool's users check).
func attestedUnsealIdentity(sealKeyID string) (bootstrap.Identity, error) {
	key, err := keyrelease.ParseKeyID(sealKeyID)
	if err != nil {
		return bootstrap.Identity{}, fmt.Errorf("-seal-key-id: %w", err)
	}
	listenerKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return bootstrap.Identity{}, err
	}
	// The enclave's wrapping key has keyrelease.WrappingKeyBits; the binding only carries its thumbprint, so a
	// smaller key keeps this tool fast.
	wrappingKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return bootstrap.Identity{}, err
	}
	binding, err := keyrelease.ListenerBindingFor(&listenerKey.PublicKey, key, &wrappingKey.PublicKey)
	if err != nil {
		return bootstrap.Identity{}, err
	}
	return bootstrap.Identity{Key: listenerKey, Binding: binding}, nil
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
