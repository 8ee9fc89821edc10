package storeidentity

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Stored is what a Store holds: the record (nil when there is none) and the store's revision of it, which Save
// passes back so that two replicas writing at once cannot both win.
type Stored struct {
	Record   []byte
	Revision string
}

// ErrConflict: the record changed between Load and Save. The check runs again at the next health reading.
var ErrConflict = errors.New("the store identity record changed meanwhile")

// Store is where the record lives between starts. Everything a Store returns comes from the host: the record is
// authenticated (AES-GCM), so the worst a Store can do is lose it or keep an old one, which only skips a refusal.
type Store interface {
	Load(ctx context.Context) (Stored, error)
	// Save replaces the record loaded at revision ("" when there was none), or fails with ErrConflict.
	Save(ctx context.Context, record []byte, revision string) error
	// String names the store in log lines.
	String() string
}

// FileStore keeps the record in a file: for test tools (cmd/storecheck), not the enclave, whose files do not
// survive a restart without a data volume.
type FileStore struct{ Path string }

func (f FileStore) String() string { return f.Path }

// Load reads the file; a missing file is no record.
func (f FileStore) Load(context.Context) (Stored, error) {
	content, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return Stored{}, nil
	}
	if err != nil {
		return Stored{}, err
	}
	return Stored{Record: content}, nil
}

// Save replaces the file atomically; revisions are not tracked (one writer).
func (f FileStore) Save(_ context.Context, record []byte, _ string) error {
	temporary := f.Path + ".new"
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(temporary, record, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", temporary, err)
	}
	if err := os.Rename(temporary, f.Path); err != nil {
		return fmt.Errorf("replacing %s: %w", f.Path, err)
	}
	return nil
}
