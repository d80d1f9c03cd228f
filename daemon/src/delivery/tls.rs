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
    #[error("tls_ca {0} holds no usable CA certificate")]
    NoCa(String),
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
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
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
