// Package cli stands in for hashicorp/cli v1.1.7 (the version OpenBao v2.6.2 requires).
package cli

// Ui is the command-line user interface (one of its methods shown).
type Ui interface {
	Output(string)
}
