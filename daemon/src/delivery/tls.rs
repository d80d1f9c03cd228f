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
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::{OutboundTls, TlsMode};

/// A delivery connection: plain TCP, or TLS after STARTTLS.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

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
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => "unknown".to_string(),
        };
        let cipher = conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_else(|| "unknown".to_string());
        TlsInfo {
            version,
            cipher,
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
