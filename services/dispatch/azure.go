package dispatch

import "errors"

// PLACEHOLDER until the adapter lands in this file.
func newAzureOpenAIVendor(vendorConfig) (vendor, error) {
	return nil, errors.New("provider not built yet")
}
