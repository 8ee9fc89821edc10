package keyrelease

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Where the measured OpenBao configuration's seal "static" reads its keys (current_key, previous_key = file://…).
// Constants, not settings: the directory lies in the enclave's in-memory root, which enclave.json leaves unmounted,
// so the keys never reach the host.
const (
	SealDir             = "/run/bao-seal"
	SealKeyPath         = SealDir + "/seal.key"
	PreviousSealKeyPath = SealDir + "/previous-seal.key"
)

// The static seal's environment overrides (github.com/openbao/go-kms-wrapping/wrappers/static/v2, v2.2.0): a non-empty
// value replaces the configuration's. The enclave sets the key ids here, because they change with the key version
// while the measured configuration cannot, and empties the key values, so only the files above are ever used.
const (
	EnvStaticSealCurrentKeyID  = "BAO_STATIC_SEAL_CURRENT_KEY_ID"
	EnvStaticSealPreviousKeyID = "BAO_STATIC_SEAL_PREVIOUS_KEY_ID"
	EnvStaticSealCurrentKey    = "BAO_STATIC_SEAL_CURRENT_KEY"
	EnvStaticSealPreviousKey   = "BAO_STATIC_SEAL_PREVIOUS_KEY"
)

// OpenBao's server replaces the configured seal's type with BAO_SEAL_TYPE (VAULT_SEAL_TYPE as fallback) when set
// (command/server.go, v2.6.2): emptied too, so the seal is the measured configuration's.
var sealTypeVariables = []string{"BAO_SEAL_TYPE", "VAULT_SEAL_TYPE"}

// sealKeyFileContent is what OpenBao's static seal decodes by length: 64 hex digits give 32 bytes. Hex rather than
// 32 raw bytes, because raw key bytes may end in what a text tool would trim as white space; no newline.
func sealKeyFileContent(key []byte) ([]byte, error) {
	if len(key) != derivedKeyBytes {
		return nil, fmt.Errorf("a seal key of %d bytes, want %d", len(key), derivedKeyBytes)
	}
	content := make([]byte, hex.EncodedLen(len(key)))
	hex.Encode(content, key)
	return content, nil
}

// writeSealKeys writes the current key and the previous one (outside a rotation: the current key again, under the
// same id, which the static seal accepts) atomically, and returns the environment the static seal reads.
func writeSealKeys(dir string, current, previous *derivedKeys) (map[string]string, error) {
	if previous == nil {
		previous = current
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	for _, file := range []struct {
		name string
		key  []byte
	}{
		{filepath.Base(SealKeyPath), current.seal},
		{filepath.Base(PreviousSealKeyPath), previous.seal},
	} {
		content, err := sealKeyFileContent(file.key)
		if err != nil {
			return nil, err
		}
		err = writeFileAtomically(filepath.Join(dir, file.name), content, 0o600)
		clear(content)
		if err != nil {
			return nil, err
		}
	}
	env := map[string]string{
		EnvStaticSealCurrentKeyID:  StaticSealKeyID(current.keyID),
		EnvStaticSealPreviousKeyID: StaticSealKeyID(previous.keyID),
		EnvStaticSealCurrentKey:    "",
		EnvStaticSealPreviousKey:   "",
	}
	for _, name := range sealTypeVariables {
		env[name] = ""
	}
	return env, nil
}

// writeFileAtomically writes a new file beside path and renames it over path, so a reader sees the old content or
// the whole new content, never part of it; it then reads the file back and compares.
func writeFileAtomically(path string, content []byte, mode os.FileMode) (err error) {
	temporary, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			os.Remove(temporary.Name())
		}
	}()
	if _, err := temporary.Write(content); err != nil {
		temporary.Close()
		return fmt.Errorf("writing %s: %w", temporary.Name(), err)
	}
	if err := temporary.Chmod(mode); err != nil {
		temporary.Close()
		return fmt.Errorf("writing %s: %w", temporary.Name(), err)
	}
	if err := temporary.Sync(); err != nil {
		temporary.Close()
		return fmt.Errorf("writing %s: %w", temporary.Name(), err)
	}
	if err := temporary.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", temporary.Name(), err)
	}
	if err := os.Rename(temporary.Name(), path); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	written, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading back %s: %w", path, err)
	}
	same := bytes.Equal(written, content)
	clear(written)
	if !same {
		return errors.New("reading back " + path + ": the file does not hold what was written")
	}
	return nil
}
