package bootstrap

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"confidential-vault.internal/bootstrap/measured"
)

// CABundlePath is where Go's crypto/x509 (and with it pgx, Entra, Key Vault and MAA clients) reads the system roots
// on Linux. The measured bundle is written here (SSL_CERT_FILE/SSL_CERT_DIR cannot point elsewhere: premain.go
// refuses every variable enclave.json does not forward).
const CABundlePath = "/etc/ssl/certs/ca-certificates.crt"

// MeasuredFile is one file of the measured configuration and where OpenBao (or Go's TLS) reads it.
type MeasuredFile struct {
	Path    string
	Content []byte
}

// MeasuredFiles are the files compiled into the binary (package measured) with the CA bundle given (measured.CABundle
// in the enclave). A bundle without a single certificate is refused: TLS would then trust nothing, or, if a later
// change fell back to another source, something unmeasured.
func MeasuredFiles(caBundle []byte) ([]MeasuredFile, error) {
	if err := checkCABundle(caBundle); err != nil {
		return nil, err
	}
	return []MeasuredFile{
		{MeasuredConfigPath, measured.Server},
		{FileStorageConfigPath, measured.FileStorage},
		{PostgreSQLStorageConfigPath, measured.PostgreSQLStorage},
		{AttestedUnsealConfigPath, measured.StaticSeal},
		{CABundlePath, caBundle},
	}, nil
}

func checkCABundle(bundle []byte) error {
	certificates := 0
	for rest := bundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("the measured CA bundle holds a certificate Go cannot parse: %v", err)
		}
		certificates++
	}
	if certificates == 0 {
		return errors.New("the measured CA bundle holds no certificate: the image build must copy the build stage's " +
			"/etc/ssl/certs/ca-certificates.crt into bootstrap/measured before `ego-go build`")
	}
	return nil
}

// WriteMeasuredFiles writes every file under root (FileSystemRoot), replacing whatever is there: a new file beside
// each is renamed over it (rename replaces a file or link, it never writes through one; a directory in the way is an
// error), then read back and compared. Only the syscalls the seal and listener files already use in the enclave
// (mkdir, open, write, rename, unlink), so EGo's memfs supports them. The content is public, hence 0644.
func WriteMeasuredFiles(root string, files []MeasuredFile) error {
	for _, file := range files {
		path := filepath.Join(root, file.Path)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("writing the measured %s: %w", file.Path, err)
		}
		temporary := path + ".measured"
		if err := os.Remove(temporary); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("writing the measured %s: %w", file.Path, err)
		}
		if err := os.WriteFile(temporary, file.Content, 0o644); err != nil {
			return fmt.Errorf("writing the measured %s: %w", file.Path, err)
		}
		if err := os.Rename(temporary, path); err != nil {
			return fmt.Errorf("replacing %s with the measured file: %w", file.Path, err)
		}
		written, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading back the measured %s: %w", file.Path, err)
		}
		if !bytes.Equal(written, file.Content) {
			return fmt.Errorf("%s does not hold the measured content after writing it", file.Path)
		}
	}
	return nil
}
