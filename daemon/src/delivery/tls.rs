//! Outbound STARTTLS (RFC 3207): the stream a delivery connection runs on,
//! the rustls client configuration for a route's `tls` mode, and what was
//! negotiated.
//!
//! - `may` and `encrypt` encrypt without checking the certificate, as
//!   Postfix's levels of the same names do: on the public internet most MX
//!   certificates would not verify, and an unchecked channel still beats
//!   plain text against a passive listener. The handshake signature is
//!   still checked (the peer holds the key of the certificate it shows).
//! - `verify` wants a chain to the route's `tls_ca` and the name in
//!   `tls_name` (default: the next hop's host name).

use std::io;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

use crate::config::{OutboundTls, TlsMode};

/// A delivery connection: plain TCP, or TLS after STARTTLS.
pub type Stream = crate::maybe_tls::MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

/// What a STARTTLS handshake negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// "TLSv1.3"
    pub version: String,
    /// "TLS13_AES_256_GCM_SHA384"
    pub cipher: String,
    /// The certificate was checked (`verify`).
    pub verified: bool,
}

impl TlsInfo {
    /// From an established client connection.
    pub fn of(conn: &rustls::ClientConnection, verified: bool) -> TlsInfo {
        TlsInfo {
            version: crate::maybe_tls::version_name(conn.protocol_version()),
            cipher: crate::maybe_tls::cipher_name(conn.negotiated_cipher_suite()),
            verified,
        }
    }
}

impl std::fmt::Display for TlsInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}{}",
            self.version,
            self.cipher,
            if self.verified { " verified" } else { "" }
        )
    }
}

/// Why a client configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("tls_ca {path}: {source}")]
    Ca {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("tls_ca {0} holds no usable CA certificate (no PEM -----BEGIN CERTIFICATE----- block that parses): give the certificate of the CA that signed the next hop's certificate")]
    NoCa(String),
    /// walkAA 6: a server's own certificate where its CA belongs; every
    /// `verify` handshake would fail with UnknownIssuer.
    #[error("tls_ca {0} holds no CA certificate, only a server's own (basicConstraints CA:FALSE, issued by another CA): every handshake on the route would fail (UnknownIssuer). Give the certificate of the CA that signed the next hop's certificate")]
    NotCa(String),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0:?} is not a name a certificate can be checked against")]
    Name(String),
}

/// Accepts any certificate, but checks the handshake signature with it.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls configuration for `tls` (not `none`).
pub fn client_config(tls: &OutboundTls) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = if tls.mode == TlsMode::Verify {
        let path = tls.ca.display().to_string();
        let pem = std::fs::read(&tls.ca).map_err(|source| TlsSetupError::Ca {
            path: path.clone(),
            source,
        })?;
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
            .flatten()
            .collect();
        if !certs.is_empty() && certs.iter().all(|c| issued_end_entity(c)) {
            return Err(TlsSetupError::NotCa(path));
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(TlsSetupError::NoCa(path));
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// One DER element: its tag, its content and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The elements of a DER sequence's content, in order.
fn der_items(mut content: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut items = Vec::new();
    while !content.is_empty() {
        let (tag, value, rest) = der(content)?;
        items.push((tag, value));
        content = rest;
    }
    Some(items)
}

/// Whether a certificate can be no trust anchor for a route: its
/// basicConstraints say it is no CA, and another issued it (issuer and
/// subject differ), so it is a server's own certificate, not the CA that
/// signed one (walkAA 6). A self-signed one may be pinned as its own
/// anchor, and one without basicConstraints (X.509 v1) is given the
/// benefit of the doubt: neither counts, nor does one that does not parse.
fn issued_end_entity(cert: &[u8]) -> bool {
    end_entity(cert).unwrap_or(false)
}

fn end_entity(cert: &[u8]) -> Option<bool> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
    let (0x30, cert, _) = der(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = der(cert)? else {
        return None;
    };
    let mut fields = der_items(tbs)?;
    // [0] version, then serialNumber, signature, issuer, validity,
    // subject, subjectPublicKeyInfo, and optional [1] [2] [3].
    if fields.first().is_some_and(|(tag, _)| *tag == 0xa0) {
        fields.remove(0);
    }
    let (issuer, subject) = (fields.get(2)?.1, fields.get(4)?.1);
    let Some((_, extensions)) = fields.iter().find(|(tag, _)| *tag == 0xa3) else {
        return Some(false);
    };
    let (0x30, extensions, _) = der(extensions)? else {
        return None;
    };
    for (_, extension) in der_items(extensions)? {
        // Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue }
        let items = der_items(extension)?;
        // 2.5.29.19 basicConstraints
        if items.first() != Some(&(0x06, &[0x55, 0x1d, 0x13][..])) {
            continue;
        }
        let (_, value) = items.iter().find(|(tag, _)| *tag == 0x04)?;
        // BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLen }
        let (0x30, constraints, _) = der(value)? else {
            return None;
        };
        let ca = match der_items(constraints)?.first() {
            Some((0x01, flag)) => flag.first().is_some_and(|b| *b != 0),
            _ => false,
        };
        return Some(!ca && issuer != subject);
    }
    Some(false)
}

/// The name to send in SNI and, under `verify`, to check: `tls_name`, else
/// the hop's host name, else (no name: an address route) its address.
pub fn server_name(
    tls: &OutboundTls,
    host: &str,
    addr: std::net::IpAddr,
) -> Result<ServerName<'static>, TlsSetupError> {
    let wanted = tls.name.as_deref().unwrap_or(host);
    if wanted.is_empty() {
        return Ok(ServerName::IpAddress(addr.into()));
    }
    ServerName::try_from(wanted.to_string()).map_err(|_| TlsSetupError::Name(wanted.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with openssl for these tests (P-256, valid until 2126): a CA
    // (CA:TRUE), a server certificate it signed (CA:FALSE), a self-signed
    // server certificate (CA:FALSE), and an X.509 v1 one the CA signed
    // (no extensions).
    const CA: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBlTCCATugAwIBAgIUU2bCaB+Fy0b6RgRscXsmv6QhRg4wCgYIKoZIzj0EAwIw\n\
FzEVMBMGA1UEAwwMVW5pdCBUZXN0IENBMCAXDTI2MTIwNTIzMDcyOFoYDzIxMjYx\n\
MTExMjMwNzI4WjAXMRUwEwYDVQQDDAxVbml0IFRlc3QgQ0EwWTATBgcqhkjOPQIB\n\
BggqhkjOPQMBBwNCAAQty19hBAXufPshQQbOCOFVqT86/aaBNU91pLctXT2q8RQV\n\
thatjq4EniytNs11D+cs7WYRAp4oDAbglIIDkz47o2MwYTAdBgNVHQ4EFgQU4qZa\n\
kiXth0jV7Mf/J4EHe6ZSK80wHwYDVR0jBBgwFoAU4qZakiXth0jV7Mf/J4EHe6ZS\n\
K80wDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAgQwCgYIKoZIzj0EAwID\n\
SAAwRQIgcufWeG6rTBmVYVfn/Z4ZfGQGzQOaZqRKjgYIfEbrrkACIQDLfPaUFsG4\n\
pezQLEsmZClOyiKV9kt1ZYQ6xFH5b8fqRw==\n\
-----END CERTIFICATE-----\n";
    const MX: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBnjCCAUSgAwIBAgIUPDmuTndl+YQj3gKf7BN3tfbEdgIwCgYIKoZIzj0EAwIw\n\
FzEVMBMGA1UEAwwMVW5pdCBUZXN0IENBMCAXDTI2MTIwNTIzMDcyOFoYDzIxMjYx\n\
MTExMjMwNzI4WjAaMRgwFgYDVQQDDA9teC5leGFtcGxlLnRlc3QwWTATBgcqhkjO\n\
PQIBBggqhkjOPQMBBwNCAAScCCjQ/DwFy/gVZme1wMPWXcD0E4K7jnlKShJouUmt\n\
T4t2sMi/9k/KWYnCl0y0uHLyh6y0qzHp8n1S/ir6UxjPo2kwZzAaBgNVHREEEzAR\n\
gg9teC5leGFtcGxlLnRlc3QwCQYDVR0TBAIwADAdBgNVHQ4EFgQUY1GnFd4hTf9d\n\
0Henw/+OLDNsPtIwHwYDVR0jBBgwFoAU4qZakiXth0jV7Mf/J4EHe6ZSK80wCgYI\n\
KoZIzj0EAwIDSAAwRQIhAOz5jGVzfNKhF4PLoAaTtGBO5dHBisQbgFOnB9xtCvQj\n\
AiAgiLaEPq0HptNXfvr7SGxRUej2WzsifFXMPzHPKwUyDg==\n\
-----END CERTIFICATE-----\n";
    const SELF_SIGNED: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBpjCCAU2gAwIBAgIUc6jcRjstLcC1hlJIDFtxh9PivywwCgYIKoZIzj0EAwIw\n\
HDEaMBgGA1UEAwwRc2VsZi5leGFtcGxlLnRlc3QwIBcNMjYxMjA1MjMwNzI4WhgP\n\
MjEyNjExMTEyMzA3MjhaMBwxGjAYBgNVBAMMEXNlbGYuZXhhbXBsZS50ZXN0MFkw\n\
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEwx9w6ZuWKZsVlTq3iRcBtv81btMwGBmV\n\
pDtfb4eqtwbqqv8CBDJEz9eeXzZjuMyoyyk8JOoOc17HtiR1plUHxaNrMGkwHQYD\n\
VR0OBBYEFKXohXTF27yh4iVGchu3RZFwqvFJMB8GA1UdIwQYMBaAFKXohXTF27yh\n\
4iVGchu3RZFwqvFJMAkGA1UdEwQCMAAwHAYDVR0RBBUwE4IRc2VsZi5leGFtcGxl\n\
LnRlc3QwCgYIKoZIzj0EAwIDRwAwRAIgX53g/4uU/01Wo5bpoutpYgoDBQ2/wArY\n\
lffL9hNshmgCIEbr2kgVKuYoc66GTzE9CI4kzxtpKdbGHRK/Pe61wzgD\n\
-----END CERTIFICATE-----\n";
    const V1: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBLjCB1QIUPDmuTndl+YQj3gKf7BN3tfbEdgMwCgYIKoZIzj0EAwIwFzEVMBMG\n\
A1UEAwwMVW5pdCBUZXN0IENBMCAXDTI2MTIwNTIzMDcyOFoYDzIxMjYxMTExMjMw\n\
NzI4WjAbMRkwFwYDVQQDDBBvbGQuZXhhbXBsZS50ZXN0MFkwEwYHKoZIzj0CAQYI\n\
KoZIzj0DAQcDQgAENLwZ7xwrRSF9AOoL0+68RCmD0SNk3k0m43ww2705n60ZRPFS\n\
hASfFbSpaDu1XHA13WBLIKrgVM0062nlQy/WTDAKBggqhkjOPQQDAgNIADBFAiAd\n\
rHxS/veNbGkTqocErUJu25s20frCWz2MTeMn2iccpAIhAP0KH2n+BrYRlSk/qP0l\n\
8pEh5Df05hYSySTYBNFGk43+\n\
-----END CERTIFICATE-----\n";

    fn verify_with(pem: &str) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pem).unwrap();
        client_config(&OutboundTls {
            mode: TlsMode::Verify,
            ca,
            name: None,
        })
    }

    /// walkAA 6: the doc's `mx.pem` as `tls_ca` passed check-config, and
    /// every delivery on the route deferred with UnknownIssuer.
    #[test]
    fn a_server_certificate_as_tls_ca_is_refused_with_what_to_give() {
        let e = verify_with(MX).unwrap_err();
        assert!(matches!(e, TlsSetupError::NotCa(_)), "{e}");
        let text = e.to_string();
        assert!(text.contains("holds no CA certificate, only a server's own (basicConstraints CA:FALSE, issued by another CA)"), "{text}");
        assert!(
            text.contains("the CA that signed the next hop's certificate"),
            "{text}"
        );
    }

    #[test]
    fn a_ca_a_bundle_with_one_a_pinned_self_signed_or_a_v1_certificate_is_taken() {
        assert!(verify_with(CA).is_ok());
        assert!(verify_with(&format!("{MX}\n{CA}\n")).is_ok());
        assert!(verify_with(SELF_SIGNED).is_ok());
        assert!(verify_with(V1).is_ok());
        assert!(matches!(
            verify_with("no certificate"),
            Err(TlsSetupError::NoCa(_))
        ));
    }

    #[test]
    fn der_reading_never_panics_on_a_cut_certificate() {
        let der: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut MX.as_bytes())
            .flatten()
            .collect();
        let der = der[0].as_ref();
        assert!(issued_end_entity(der));
        for n in 0..der.len() {
            assert!(!issued_end_entity(&der[..n]));
        }
    }
}
