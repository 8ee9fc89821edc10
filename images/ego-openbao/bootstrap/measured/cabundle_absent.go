//go:build !cv_enclave

package measured

// CABundle is empty outside the enclave build (cv_enclave embeds the build image's bundle, cabundle.go): tests give
// bootstrap.MeasuredFiles a bundle of their own, and an empty one is refused.
var CABundle []byte
