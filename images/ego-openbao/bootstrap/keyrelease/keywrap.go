package keyrelease

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// AES key wrap (RFC 3394) and AES key wrap with padding (RFC 5649, NIST SP 800-38F "KWP"): Key Vault wraps the
// released key with KWP under a transient AES key. Go's standard library has neither.

// ErrKeyWrapIntegrity means an unwrap's integrity check failed: the wrong key, or data that was not wrapped or was
// altered.
var ErrKeyWrapIntegrity = errors.New("AES key unwrap: integrity check failed")

const semiblock = 8

// rfc3394IV is RFC 3394's default initial value (section 2.2.3.1).
var rfc3394IV = [semiblock]byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}

// rfc5649ICV is RFC 5649's alternative initial value prefix (section 3); the 32-bit message length follows it.
var rfc5649ICV = [4]byte{0xa6, 0x59, 0x59, 0xa6}

// Wrap is RFC 3394 key wrap with the default initial value: plaintext is a multiple of 8 bytes, at least 16.
func Wrap(kek, plaintext []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(plaintext) < 2*semiblock || len(plaintext)%semiblock != 0 {
		return nil, fmt.Errorf("AES key wrap: plaintext of %d bytes, want a multiple of 8 of at least 16", len(plaintext))
	}
	return wrapBlocks(block, rfc3394IV, plaintext), nil
}

// Unwrap is RFC 3394 key unwrap with the default initial value.
func Unwrap(kek, ciphertext []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < 3*semiblock || len(ciphertext)%semiblock != 0 {
		return nil, fmt.Errorf("AES key unwrap: ciphertext of %d bytes, want a multiple of 8 of at least 24", len(ciphertext))
	}
	iv, plaintext := unwrapBlocks(block, ciphertext)
	if subtle.ConstantTimeCompare(iv[:], rfc3394IV[:]) != 1 {
		clear(plaintext)
		return nil, ErrKeyWrapIntegrity
	}
	return plaintext, nil
}

// WrapPad is RFC 5649 key wrap with padding: any plaintext of 1 to 2^32-1 bytes.
func WrapPad(kek, plaintext []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(plaintext) == 0 || uint64(len(plaintext)) > 0xffffffff {
		return nil, fmt.Errorf("AES key wrap with padding: plaintext of %d bytes, want 1 to 2^32-1", len(plaintext))
	}
	var iv [semiblock]byte
	copy(iv[:4], rfc5649ICV[:])
	binary.BigEndian.PutUint32(iv[4:], uint32(len(plaintext)))
	padded := make([]byte, (len(plaintext)+semiblock-1)/semiblock*semiblock)
	copy(padded, plaintext)
	defer clear(padded)
	if len(padded) == semiblock {
		// Section 4.1: a single semiblock is encrypted with the initial value as one AES block.
		out := make([]byte, aes.BlockSize)
		copy(out, iv[:])
		copy(out[semiblock:], padded)
		block.Encrypt(out, out)
		return out, nil
	}
	return wrapBlocks(block, iv, padded), nil
}

// UnwrapPad is RFC 5649 key unwrap with padding; it checks the initial value, the length and the padding.
func UnwrapPad(kek, ciphertext []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < 2*semiblock || len(ciphertext)%semiblock != 0 {
		return nil, fmt.Errorf("AES key unwrap with padding: ciphertext of %d bytes, want a multiple of 8 of at least 16", len(ciphertext))
	}
	var iv [semiblock]byte
	var padded []byte
	if len(ciphertext) == 2*semiblock {
		out := make([]byte, aes.BlockSize)
		block.Decrypt(out, ciphertext)
		copy(iv[:], out[:semiblock])
		padded = out[semiblock:]
	} else {
		iv, padded = unwrapBlocks(block, ciphertext)
	}
	// Section 3, step 3: check the prefix, the length and that the padding is zero, all without early exits.
	length := int(binary.BigEndian.Uint32(iv[4:]))
	ok := subtle.ConstantTimeCompare(iv[:4], rfc5649ICV[:])
	lengthFits := length > len(padded)-semiblock && length <= len(padded)
	if lengthFits {
		var padding byte
		for _, b := range padded[length:] {
			padding |= b
		}
		ok &= subtle.ConstantTimeByteEq(padding, 0)
	}
	if ok != 1 || !lengthFits {
		clear(padded)
		return nil, ErrKeyWrapIntegrity
	}
	return padded[:length], nil
}

// wrapBlocks is RFC 3394 section 2.2.1 (index based): n = len(plaintext)/8 >= 2 semiblocks.
func wrapBlocks(block cipher.Block, iv [semiblock]byte, plaintext []byte) []byte {
	n := len(plaintext) / semiblock
	out := make([]byte, semiblock+len(plaintext))
	copy(out[semiblock:], plaintext)
	a := iv
	var buffer [aes.BlockSize]byte
	for j := 0; j < 6; j++ {
		for i := 1; i <= n; i++ {
			r := out[i*semiblock : (i+1)*semiblock]
			copy(buffer[:semiblock], a[:])
			copy(buffer[semiblock:], r)
			block.Encrypt(buffer[:], buffer[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(buffer[:semiblock])^t)
			copy(r, buffer[semiblock:])
		}
	}
	copy(out[:semiblock], a[:])
	clear(buffer[:])
	return out
}

// unwrapBlocks is RFC 3394 section 2.2.2 (index based); it returns the recovered initial value and plaintext.
func unwrapBlocks(block cipher.Block, ciphertext []byte) ([semiblock]byte, []byte) {
	n := len(ciphertext)/semiblock - 1
	plaintext := make([]byte, n*semiblock)
	copy(plaintext, ciphertext[semiblock:])
	var a [semiblock]byte
	copy(a[:], ciphertext[:semiblock])
	var buffer [aes.BlockSize]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			r := plaintext[(i-1)*semiblock : i*semiblock]
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(buffer[:semiblock], binary.BigEndian.Uint64(a[:])^t)
			copy(buffer[semiblock:], r)
			block.Decrypt(buffer[:], buffer[:])
			copy(a[:], buffer[:semiblock])
			copy(r, buffer[semiblock:])
		}
	}
	clear(buffer[:])
	return a, plaintext
}
