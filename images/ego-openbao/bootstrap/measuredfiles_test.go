package bootstrap

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"confidential-vault.internal/bootstrap/measured"
)

// TestMeasuredConfigurationIsEmbedded: the configuration OpenBao reads and the CA bundle Go's TLS trusts are the bytes
// compiled into the binary, written over whatever an earlier step (EGo's premain, the host) left at their paths; a
// bundle without certificates is refused; and the built hook writes them before it plans the launch.
func TestMeasuredConfigurationIsEmbedded(t *testing.T) {
	// The embedded bytes are the reviewed files in measured/, each where the launch plan points OpenBao.
	for path, source := range map[string]string{
		MeasuredConfigPath:          "openbao.hcl",
		FileStorageConfigPath:       "storage-file.hcl",
		PostgreSQLStorageConfigPath: "storage-postgresql.hcl",
		AttestedUnsealConfigPath:    "seal-static.hcl",
	} {
		reviewed, err := os.ReadFile(filepath.Join("measured", source))
		if err != nil {
			t.Fatal(err)
		}
		files, err := MeasuredFiles(mustCABundle(t))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, file := range files {
			if file.Path == path {
				found = true
				if !bytes.Equal(file.Content, reviewed) {
					t.Errorf("%s: the embedded content differs from measured/%s", path, source)
				}
			}
		}
		if !found {
			t.Errorf("%s is not among the measured files", path)
		}
	}

	// A root where something else wrote first: an audit device to a host path, a CA of the host's, a directory.
	caBundle := mustCABundle(t)
	files, err := MeasuredFiles(caBundle)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	tampered := map[string]string{
		MeasuredConfigPath: `audit "file" "host" { options { file_path = "/openbao/data/audit.log" log_raw = true } }`,
		CABundlePath:       "-----BEGIN CERTIFICATE-----\nthe host's own CA\n-----END CERTIFICATE-----\n",
	}
	for path, content := range tampered {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, path), []byte(content), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	// A link in place of a file: replaced, not written through (the target keeps its content).
	elsewhere := filepath.Join(t.TempDir(), "host-file")
	if err := os.WriteFile(elsewhere, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "etc", "openbao"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(root, AttestedUnsealConfigPath)); err != nil {
		t.Fatal(err)
	}
	if err := WriteMeasuredFiles(root, files); err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		written, err := os.ReadFile(filepath.Join(root, file.Path))
		if err != nil || !bytes.Equal(written, file.Content) {
			t.Errorf("%s: not the measured content after writing (%v)", file.Path, err)
		}
		info, err := os.Lstat(filepath.Join(root, file.Path))
		if err != nil || !info.Mode().IsRegular() || info.Mode().Perm() != 0o644 {
			t.Errorf("%s: %v, %v; want a plain 0644 file", file.Path, info.Mode(), err)
		}
	}
	if content, _ := os.ReadFile(elsewhere); string(content) != "host" {
		t.Errorf("the write went through a link: %q", content)
	}
	// A directory where a file belongs cannot be replaced: the bootstrap refuses instead of running without it.
	blocked := t.TempDir()
	if err := os.MkdirAll(filepath.Join(blocked, MeasuredConfigPath, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteMeasuredFiles(blocked, files); err == nil || !strings.Contains(err.Error(), MeasuredConfigPath) {
		t.Errorf("a directory at %s: %v", MeasuredConfigPath, err)
	}

	// No certificate in the bundle (the build forgot to copy it, or copied something else): refused.
	for _, bundle := range []string{"", "placeholder\n", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
		"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"} {
		if _, err := MeasuredFiles([]byte(bundle)); err == nil {
			t.Errorf("CA bundle %q accepted", bundle)
		}
	}
	// Outside the enclave build nothing is embedded, so only a test's bundle can pass (cabundle_absent.go).
	if len(measured.CABundle) != 0 {
		t.Errorf("measured.CABundle is set without the cv_enclave tag")
	}

	// The built hook writes them under its root first: a tampered configuration is gone when the launch is planned
	// (the plan's refusal for a missing CV_MAA_URL comes after), and the bundle is the one the build embedded.
	hook := buildHook(t)
	for path, content := range tampered {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(hook.root, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hook.root, path), []byte(content), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	_, stderr, code := hook.run(t, []string{EnvListenerNames + "=vault.example.com"}, "server", "-config=/tmp/storageconfig.hcl")
	if code != 1 || !strings.Contains(stderr, "CV_MAA_URL is not set") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if written, _ := os.ReadFile(filepath.Join(hook.root, MeasuredConfigPath)); !bytes.Equal(written, measured.Server) {
		t.Errorf("the hook left %s as %q", MeasuredConfigPath, written)
	}
	if written, _ := os.ReadFile(filepath.Join(hook.root, CABundlePath)); !bytes.Equal(written, hook.caBundle) {
		t.Errorf("the hook's CA bundle is not the one the build embedded: %q", written)
	}
}

func mustCABundle(t *testing.T) []byte {
	t.Helper()
	bundle, err := testCABundle()
	if err != nil {
		t.Fatal(err)
	}
	return bundle
}
