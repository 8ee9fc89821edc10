package keyrelease

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 3394 section 4 (4.1 to 4.6), as published.
func TestWrapMatchesRFC3394Vectors(t *testing.T) {
	const (
		kek128 = "000102030405060708090A0B0C0D0E0F"
		kek192 = "000102030405060708090A0B0C0D0E0F1011121314151617"
		kek256 = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
		data16 = "00112233445566778899AABBCCDDEEFF"
		data24 = "00112233445566778899AABBCCDDEEFF0001020304050607"
		data32 = "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F"
	)
	vectors := []struct{ section, kek, data, wrapped string }{
		{"4.1", kek128, data16, "1FA68B0A8112B447 AEF34BD8FB5A7B82 9D3E862371D2CFE5"},
		{"4.2", kek192, data16, "96778B25AE6CA435 F92B5B97C050AED2 468AB8A17AD84E5D"},
		{"4.3", kek256, data16, "64E8C3F9CE0F5BA2 63E9777905818A2A 93C8191E7D6E8AE7"},
		{"4.4", kek192, data24, "031D33264E15D332 68F24EC260743EDC E1C6C7DDEE725A93 6BA814915C6762D2"},
		{"4.5", kek256, data24, "A8F9BC1612C68B3F F6E6F4FBE30E71E4 769C8B80A32CB895 8CD5D17D6B254DA1"},
		{"4.6", kek256, data32, "28C9F404C4B810F4 CBCCB35CFB87F826 3F5786E2D80ED326 CBC7F0E71A99F43B FB988B9B7A02DD21"},
	}
	for _, v := range vectors {
		t.Run(v.section, func(t *testing.T) {
			kek, data, want := unhex(t, v.kek), unhex(t, v.data), unhex(t, v.wrapped)
			got, err := Wrap(kek, data)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("Wrap = %X, %v; want %X", got, err, want)
			}
			back, err := Unwrap(kek, want)
			if err != nil || !bytes.Equal(back, data) {
				t.Fatalf("Unwrap = %X, %v; want %X", back, err, data)
			}
		})
	}
}

// RFC 5649 section 6: both published examples (20 and 7 octets under a 192-bit KEK).
func TestWrapPadMatchesRFC5649Vectors(t *testing.T) {
	kek := unhex(t, "5840df6e29b02af1 ab493b705bf16ea1 ae8338f4dcc176a8")
	vectors := []struct{ name, key, wrapped string }{
		{"20 octets", "c37b7e6492584340 bed1220780894115 5068f738", "138bdeaa9b8fa7fc 61f97742e72248ee 5ae6ae5360d1ae6a 5f54f373fa543b6a"},
		{"7 octets", "466f7250617369", "afbeb0f07dfbf541 9200f2ccb50bb24f"},
	}
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			key, want := unhex(t, v.key), unhex(t, v.wrapped)
			got, err := WrapPad(kek, key)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("WrapPad = %x, %v; want %x", got, err, want)
			}
			back, err := UnwrapPad(kek, want)
			if err != nil || !bytes.Equal(back, key) {
				t.Fatalf("UnwrapPad = %x, %v; want %x", back, err, key)
			}
		})
	}
}

func TestUnwrapPadRefusesAlteredOrForeignData(t *testing.T) {
	kek := bytes.Repeat([]byte{7}, 32)
	for _, size := range []int{1, 7, 8, 9, 31, 32, 1217} {
		plaintext := bytes.Repeat([]byte{0x5a}, size)
		wrapped, err := WrapPad(kek, plaintext)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := UnwrapPad(kek, wrapped); err != nil || !bytes.Equal(back, plaintext) {
			t.Fatalf("%d bytes: round trip gave %d bytes, %v", size, len(back), err)
		}
		for _, position := range []int{0, len(wrapped) / 2, len(wrapped) - 1} {
			altered := bytes.Clone(wrapped)
			altered[position] ^= 1
			if _, err := UnwrapPad(kek, altered); !errors.Is(err, ErrKeyWrapIntegrity) {
				t.Errorf("%d bytes, bit flipped at %d: err = %v, want the integrity error", size, position, err)
			}
		}
		otherKEK := bytes.Repeat([]byte{8}, 32)
		if _, err := UnwrapPad(otherKEK, wrapped); !errors.Is(err, ErrKeyWrapIntegrity) {
			t.Errorf("%d bytes under another key: err = %v, want the integrity error", size, err)
		}
	}
	// RFC 3394 output (default IV) is not RFC 5649 output: the padded unwrap must refuse it.
	plain, err := Wrap(kek, bytes.Repeat([]byte{1}, 16))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UnwrapPad(kek, plain); !errors.Is(err, ErrKeyWrapIntegrity) {
		t.Errorf("RFC 3394 ciphertext: err = %v, want the integrity error", err)
	}
	for _, size := range []int{0, 8, 17} {
		if _, err := UnwrapPad(kek, make([]byte, size)); err == nil || errors.Is(err, ErrKeyWrapIntegrity) {
			t.Errorf("%d-byte ciphertext: err = %v, want a length error", size, err)
		}
	}
}

// A 16-byte ciphertext whose stated length leaves non-zero padding must be refused (RFC 5649 section 3 step 3).
func TestUnwrapPadChecksThePadding(t *testing.T) {
	kek := bytes.Repeat([]byte{3}, 16)
	// Wrap 8 bytes whose last 3 are not zero, then claim (by wrapping with a forged length) that only 5 count.
	forged, err := WrapPad(kek, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	if err != nil {
		t.Fatal(err)
	}
	block := mustAES(t, kek)
	decrypted := make([]byte, 16)
	block.Decrypt(decrypted, forged)
	decrypted[7] = 5 // the length field's low byte
	block.Encrypt(forged, decrypted)
	if _, err := UnwrapPad(kek, forged); !errors.Is(err, ErrKeyWrapIntegrity) {
		t.Errorf("non-zero padding: err = %v, want the integrity error", err)
	}
}

func mustAES(t *testing.T, key []byte) cipher.Block {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	return block
}
