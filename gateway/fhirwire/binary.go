package fhirwire

import (
	"encoding/base64"
	"encoding/json"
	"errors"
)

// BinaryContent returns the contentType of a stored Binary resource (body,
// its JSON) and its data decoded: the content a read answers in the
// Binary's own content type (binary.html). data is nil for a Binary
// without data. An error for a body that is not a Binary or whose data is
// not base64.
func BinaryContent(body []byte) (contentType string, data []byte, err error) {
	var b struct {
		ResourceType string `json:"resourceType"`
		ContentType  string `json:"contentType"`
		Data         string `json:"data"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return "", nil, err
	}
	if b.ResourceType != "Binary" {
		return "", nil, errors.New("fhirwire: not a Binary")
	}
	if b.Data != "" {
		if data, err = base64.StdEncoding.DecodeString(b.Data); err != nil {
			return "", nil, err
		}
	}
	return b.ContentType, data, nil
}
