package storeidentity

import (
	"context"
	"fmt"

	"confidential-vault.internal/bootstrap"
)

// Checker compares what OpenBao reports with the record and keeps the record current.
type Checker struct {
	Store Store
	Keys  Keys
	Logf  func(format string, args ...any)
}

// Check decides on one store state read from OpenBao's health. It returns an error wrapping
// bootstrap.ErrStoreRefused when a record decrypts and the store is uninitialised or carries another cluster_id: the
// caller stops the enclave. Other errors (the record store unreachable, a write conflict) decide nothing: the caller
// tries again at the next reading. A record that decrypts under neither key counts as none, so that a deliberate
// re-initialisation under a new seal key version starts over.
func (c *Checker) Check(ctx context.Context, state bootstrap.StoreState) error {
	stored, err := c.Store.Load(ctx)
	if err != nil {
		return fmt.Errorf("reading the store identity record from %s: %w", c.Store, err)
	}
	if stored.Record != nil {
		clusterID, under, err := Open(c.Keys, stored.Record)
		if err == nil {
			return c.compare(ctx, state, clusterID, under, stored.Revision)
		}
		c.Logf("store identity record in %s unusable, treating it as none: %v", c.Store, err)
	}
	if !state.Initialized || state.ClusterID == "" {
		// Nothing to record yet: uninitialised (the first initialisation is the client's --init) or sealed.
		return nil
	}
	if err := c.save(ctx, state.ClusterID, stored.Revision); err != nil {
		return err
	}
	c.Logf("store identity recorded in %s: cluster_id %s under %s", c.Store, state.ClusterID, c.Keys.Current.SealKeyID)
	return nil
}

func (c *Checker) compare(ctx context.Context, state bootstrap.StoreState, recorded string, under Key, revision string) error {
	switch {
	case !state.Initialized:
		return fmt.Errorf("%w: it is uninitialised, but this enclave has served the store with cluster_id %s under %s "+
			"(record in %s). Restore that store's database, or re-initialise deliberately with a new seal key version",
			bootstrap.ErrStoreRefused, recorded, under.SealKeyID, c.Store)
	case state.ClusterID == "":
		// Sealed: the cluster_id is in the barrier; the check runs again once OpenBao reports it.
		return nil
	case state.ClusterID != recorded:
		return fmt.Errorf("%w: its cluster_id is %s, but this enclave has served the store with cluster_id %s under %s "+
			"(record in %s). Point the server at that store's database, or re-initialise deliberately with a new seal key version",
			bootstrap.ErrStoreRefused, state.ClusterID, recorded, under.SealKeyID, c.Store)
	}
	if under.SealKeyID == c.Keys.Current.SealKeyID {
		c.Logf("store identity matches the record in %s: cluster_id %s", c.Store, recorded)
		return nil
	}
	// Under the previous key version: move it to the current one before the previous key is disabled.
	if err := c.save(ctx, recorded, revision); err != nil {
		return err
	}
	c.Logf("store identity matches the record in %s: cluster_id %s; re-encrypted from %s to %s", c.Store, recorded,
		under.SealKeyID, c.Keys.Current.SealKeyID)
	return nil
}

func (c *Checker) save(ctx context.Context, clusterID, revision string) error {
	content, err := Seal(c.Keys.Current, clusterID)
	if err != nil {
		return err
	}
	if err := c.Store.Save(ctx, content, revision); err != nil {
		return fmt.Errorf("writing the store identity record to %s: %w", c.Store, err)
	}
	return nil
}
