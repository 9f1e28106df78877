// Package seal encrypts small secrets (vendor credentials) at rest with AES-256-GCM under a
// master key, binding each ciphertext to what it belongs to (associated data), so a sealed
// value copied onto another record does not open.
//
// A sealed value is: version byte (1) | key id (8 bytes, the first bytes of SHA-256 of the
// key) | nonce (12 bytes, random) | ciphertext and tag. The key id lets a reader name the key
// a value needs during a key rotation without trying every key.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

const (
	version  = 1
	keyIDLen = 8
	// KeySize is the master key's length in bytes.
	KeySize = 32
)

// ErrOpen is returned for any value that does not open: wrong key, wrong associated data,
// or tampering. It says nothing more, by design.
var ErrOpen = errors.New("sealed value does not open")

// Box seals and opens values with one master key. It is safe for concurrent use.
type Box struct {
	aead  cipher.AEAD
	keyID [keyIDLen]byte
}

// New returns a Box for a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("master key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	b := &Box{aead: aead}
	sum := sha256.Sum256(key)
	copy(b.keyID[:], sum[:keyIDLen])
	return b, nil
}

// ParseKey decodes a master key given as standard or URL-safe base64 (44 or 43 characters).
// The error never contains the input.
func ParseKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("master key must be %d bytes in base64", KeySize)
}

// Seal encrypts plaintext bound to associated data ad (such as "org/credential-name").
func (b *Box) Seal(plaintext, ad []byte) ([]byte, error) {
	out := make([]byte, 1+keyIDLen+b.aead.NonceSize(), 1+keyIDLen+b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	out[0] = version
	copy(out[1:], b.keyID[:])
	if _, err := rand.Read(out[1+keyIDLen:]); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	nonce := out[1+keyIDLen:]
	return b.aead.Seal(out, nonce, plaintext, ad), nil
}

// Open decrypts a value sealed with the same key and associated data.
func (b *Box) Open(sealed, ad []byte) ([]byte, error) {
	head := 1 + keyIDLen + b.aead.NonceSize()
	if len(sealed) < head+b.aead.Overhead() || sealed[0] != version || [keyIDLen]byte(sealed[1:1+keyIDLen]) != b.keyID {
		return nil, ErrOpen
	}
	pt, err := b.aead.Open(nil, sealed[1+keyIDLen:head], sealed[head:], ad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}
