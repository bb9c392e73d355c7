package webhooks

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// box encrypts signing secrets at rest with AES-256-GCM. Standard Webhooks
// signs with an HMAC of the secret, so the service must read it back: a
// hash would not do. The key is SHA-256 of webhooks.secretKey, so any
// string of 32 bytes or more serves.
type box struct{ aead cipher.AEAD }

func newBox(key string) (box, error) {
	k := sha256.Sum256([]byte(key))
	block, err := aes.NewCipher(k[:])
	if err != nil {
		return box{}, fmt.Errorf("webhooks: cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return box{}, fmt.Errorf("webhooks: gcm: %w", err)
	}
	return box{aead: aead}, nil
}

// seal returns base64(nonce || ciphertext).
func (b box) seal(plain string) (string, error) {
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("webhooks: nonce: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b.aead.Seal(nonce, nonce, []byte(plain), nil)), nil
}

// errUnreadableSecret: the stored secret does not open with the configured
// key (webhooks.secretKey changed); rotating the secret repairs it.
var errUnreadableSecret = errors.New("webhooks: the stored secret does not decrypt with webhooks.secretKey; rotate the endpoint's secret")

func (b box) open(sealed string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil || len(raw) < b.aead.NonceSize() {
		return "", errUnreadableSecret
	}
	n := b.aead.NonceSize()
	plain, err := b.aead.Open(nil, raw[:n], raw[n:], nil)
	if err != nil {
		return "", errUnreadableSecret
	}
	return string(plain), nil
}
