package delivery

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestDescribeTLSFailures: each TLS failure says what is wrong (an unknown
// authority, a certificate for other names, an expired certificate, a
// server that does not speak TLS), not one "certificate not trusted".
func TestDescribeTLSFailures(t *testing.T) {
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "wronghost.example"},
		NotBefore: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	san := &x509.Certificate{DNSNames: []string{"ehr.example.org"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.5")}}
	verify := func(err error) error {
		return &url.Error{Op: "Post", URL: "https://127.0.0.1/fhir", Err: &tls.CertificateVerificationError{Err: err}}
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"unknown authority", verify(x509.UnknownAuthorityError{Cert: cert}), "signed by an unknown authority (set tls.caFile"},
		{"hostname, common name", verify(x509.HostnameError{Certificate: cert, Host: "127.0.0.1"}),
			"the certificate is for wronghost.example (common name only), not 127.0.0.1"},
		{"hostname, SANs", verify(x509.HostnameError{Certificate: san, Host: "ehr.example.com"}),
			"the certificate is for ehr.example.org, 10.0.0.5, not ehr.example.com"},
		{"expired", verify(x509.CertificateInvalidError{Cert: cert, Reason: x509.Expired}),
			"expired or is not yet valid (valid from 2024-01-01T00:00:00Z to 2025-01-01T00:00:00Z)"},
		{"not TLS", &url.Error{Op: "Post", URL: "https://127.0.0.1/fhir", Err: tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}},
			"the server did not answer TLS (is it http?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := describe(tc.err)
			if !strings.Contains(e.reason, tc.want) || !e.destWide {
				t.Errorf("describe = %q (destination-wide %v), want %q, destination-wide", e.reason, e.destWide, tc.want)
			}
		})
	}
}
