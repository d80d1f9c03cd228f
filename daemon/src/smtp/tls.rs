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
    /// rustls says "invalid peer certificate" of our own (walkBJ F12: a
    /// version 1 certificate, which `openssl x509 -req` makes without
    /// extensions).
    #[error(
        "{cert}: this certificate cannot be served ({detail:?}){}",
        version_hint(detail)
    )]
    BadCertificate {
        cert: PathBuf,
        detail: rustls::CertificateError,
    },
    #[error("certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// What to do about a certificate rustls refuses as too old a version.
fn version_hint(detail: &rustls::CertificateError) -> &'static str {
    if format!("{detail:?}").contains("UnsupportedCertVersion") {
        ": it must be an X.509 version 3 certificate, as a CA issues them (openssl x509 -req makes version 1 unless given extensions: add -extfile FILE, FILE holding a line subjectAltName=DNS:HOST)"
    } else {
        ""
    }
}

/// For a read refused: who was refused and what to change (walkBJ F1:
/// `run`, switched to server.user, said only "Permission denied").
fn permission_hint(e: &std::io::Error) -> String {
    if e.kind() != std::io::ErrorKind::PermissionDenied {
        return String::new();
    }
    let user = crate::ops::privileges::user_name(nix::unistd::geteuid().as_raw());
    format!(
        "; mailward runs as {user}: make the file readable by {user} or its group, \
         and its directories enterable (Debian: adduser {user} ssl-cert, with the key \
         0640 root:ssl-cert; mailward check-config run by root names what refuses)"
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

/// The STARTTLS side of the listener, built from one read of the files:
/// the validity shown by `mailward status` is that of the certificate
/// the acceptor serves, even when a renewal replaces the file meanwhile.
pub struct ServerTls {
    pub acceptor: TlsAcceptor,
    /// None when x509-parser cannot read the certificate rustls took.
    pub validity: Option<CertValidity>,
}

pub fn acceptor(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
    let certs = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            path: cert.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let validity = certs.first().and_then(|der| validity_of(cert, der));
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
        rustls::Error::InvalidCertificate(detail) => TlsError::BadCertificate {
            cert: cert.to_path_buf(),
            detail,
        },
        e => TlsError::Config(e),
    })?;
    Ok(ServerTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        validity,
    })
}

/// How long the STARTTLS certificate is valid: what rustls does not say,
/// and what an expired certificate costs only once clients start failing
/// (walkBJ F2: check-config, the start and `mailward status` were silent
/// about a certificate expired for years).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertValidity {
    /// The file (`network.tls_certificate`).
    pub path: PathBuf,
    /// The certificate's subject, as openssl prints it.
    pub subject: String,
    /// Its notBefore and notAfter, UNIX seconds.
    pub not_before: i64,
    pub not_after: i64,
}

/// Within this many days of its end, a certificate is said to expire.
pub const EXPIRES_SOON_DAYS: i64 = 14;

/// The validity of the first certificate in `cert` (the server's own; the
/// chain follows it): None when the file cannot be read or parsed, which
/// [`acceptor`] reports on its own.
pub fn validity(cert: &Path) -> Option<CertValidity> {
    let der = rustls_pemfile::certs(&mut open(cert).ok()?).next()?.ok()?;
    validity_of(cert, &der)
}

fn validity_of(cert: &Path, der: &[u8]) -> Option<CertValidity> {
    let (_, parsed) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(CertValidity {
        path: cert.to_path_buf(),
        subject: parsed.subject().to_string(),
        not_before: parsed.validity().not_before.timestamp(),
        not_after: parsed.validity().not_after.timestamp(),
    })
}

impl CertValidity {
    /// What is wrong with it at `now` (UNIX seconds): expired, not valid
    /// yet, or expiring within [`EXPIRES_SOON_DAYS`]; None when nothing.
    pub fn problem(&self, now: i64) -> Option<String> {
        let date = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0).map_or_else(
                || t.to_string(),
                |d| d.format("%Y-%m-%d %H:%M UTC").to_string(),
            )
        };
        let what = format!(
            "the STARTTLS certificate in {} ({})",
            self.path.display(),
            self.subject
        );
        if now >= self.not_after {
            Some(format!(
                "{what} expired on {}: clients that check it fail the handshake (some then send in plain text, some defer). Renew it, then `mailward reload`",
                date(self.not_after)
            ))
        } else if now < self.not_before {
            Some(format!(
                "{what} is not valid before {}: clients that check it fail the handshake until then (a clock behind, or a certificate issued for later?)",
                date(self.not_before)
            ))
        } else if self.not_after - now < EXPIRES_SOON_DAYS * 86_400 {
            Some(format!(
                "{what} expires on {}, in {} day(s): renew it, then `mailward reload`",
                date(self.not_after),
                (self.not_after - now) / 86_400
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(not_before: i64, not_after: i64) -> CertValidity {
        CertValidity {
            path: "/etc/mailward/cert.pem".into(),
            subject: "CN=mx.example.com".into(),
            not_before,
            not_after,
        }
    }

    #[test]
    fn an_expired_or_expiring_certificate_is_a_problem() {
        let day = 86_400;
        let now = 1_800_000_000;
        assert_eq!(v(now - 90 * day, now + 60 * day).problem(now), None);
        let soon = v(now - 90 * day, now + 3 * day + 5).problem(now).unwrap();
        assert!(
            soon.contains("expires on") && soon.contains("in 3 day(s)"),
            "{soon}"
        );
        let gone = v(now - 90 * day, now - day).problem(now).unwrap();
        assert!(
            gone.starts_with("the STARTTLS certificate in /etc/mailward/cert.pem (CN=mx.example.com) expired on 2027-01-14 08:00 UTC:"),
            "{gone}"
        );
        let early = v(now + day, now + 90 * day).problem(now).unwrap();
        assert!(early.contains("is not valid before"), "{early}");
    }
}
