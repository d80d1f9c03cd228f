//! The TLS server configuration for STARTTLS (rustls with the ring provider),
//! built from the PEM files named in `[network]`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}{}", permission_hint(source))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: no certificate found (expected PEM \"BEGIN CERTIFICATE\")")]
    NoCertificate(PathBuf),
    #[error("{0}: no private key found (expected PEM PKCS#8, PKCS#1 or SEC1)")]
    NoKey(PathBuf),
    #[error("{key}: this key does not belong to the certificate in {cert} (a renewal that replaced one file of the two?)")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// For a read refused: who was refused and what to change (walkBJ F1:
/// `run`, switched to server.user, said only "Permission denied").
fn permission_hint(e: &std::io::Error) -> String {
    if e.kind() != std::io::ErrorKind::PermissionDenied {
        return String::new();
    }
    let uid = nix::unistd::geteuid();
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name);
    format!(
        "; mailward runs as {user}: make the file readable by {user} or its group \
         (Debian: adduser {user} ssl-cert, with the key 0640 root:ssl-cert)"
    )
}

fn open(path: &Path) -> Result<std::io::BufReader<std::fs::File>, TlsError> {
    std::fs::File::open(path)
        .map(std::io::BufReader::new)
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
}

pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            path: cert.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let key_der = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(|source| TlsError::Read {
            path: key.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey(key.to_path_buf()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .map_err(|e| match e {
        // rustls says "keys may not be consistent: KeyMismatch" and
        // names neither file (walkAZ F7).
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        },
        e => TlsError::Config(e),
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
