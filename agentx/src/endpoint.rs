//! Where the AgentX master listens, in net-snmp's syntax (`/path`,
//! `unix:/path`, `tcp:HOST:PORT`) and the older forms (`local:/path`,
//! `inet:PORT@HOST`), and how to connect to it. It does not speak AgentX.

use std::fmt;
use std::io;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// The AgentX port over TCP (RFC 2741 section 8.1.1).
pub const AGENTX_TCP_PORT: u16 = 705;

/// An AgentX master's address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A UNIX-domain stream socket.
    Unix(PathBuf),
    /// A TCP host (name or address) and port.
    Tcp {
        /// Host name or address (an IPv6 address without brackets).
        host: String,
        /// Port.
        port: u16,
    },
}

/// Why an endpoint string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Nothing given.
    #[error("empty AgentX endpoint")]
    Empty,
    /// A transport prefix other than unix, local, tcp, tcp6 or inet.
    #[error("unknown AgentX transport {0:?} in {1:?} (unix:/path, /path, tcp:HOST:PORT, local:/path or inet:PORT@HOST expected)")]
    UnknownTransport(String, String),
    /// Neither a path nor `TRANSPORT:...` (a word such as `off`, or a
    /// relative path): there is no transport to call unknown (walkBH F4).
    #[error("{0:?} is not an AgentX address (unix:/path, /path, tcp:HOST:PORT, local:/path or inet:PORT@HOST expected)")]
    NotAnAddress(String),
    /// A socket path that is empty or not absolute.
    #[error("AgentX socket path {0:?} must be absolute")]
    BadPath(String),
    /// A host that is empty.
    #[error("AgentX endpoint {0:?} has no host")]
    MissingHost(String),
    /// A port that is not a number in 1..=65535.
    #[error("AgentX endpoint {0:?} has a bad port (1..=65535 expected)")]
    BadPort(String),
}

impl Endpoint {
    /// Parses `/path`, `unix:/path`, `local:/path`, `tcp:HOST:PORT`
    /// (`tcp:HOST` means port 705; `tcp:[v6]:PORT` for IPv6; `tcp6:` is
    /// accepted too) and `inet:PORT@HOST`.
    pub fn parse(s: &str) -> Result<Endpoint, EndpointError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(EndpointError::Empty);
        }
        if s.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(s)));
        }
        let Some((transport, rest)) = s.split_once(':') else {
            return Err(EndpointError::NotAnAddress(s.to_string()));
        };
        match transport.to_ascii_lowercase().as_str() {
            "unix" | "local" => {
                if rest.starts_with('/') {
                    Ok(Endpoint::Unix(PathBuf::from(rest)))
                } else {
                    Err(EndpointError::BadPath(rest.to_string()))
                }
            }
            "tcp" | "tcp6" => parse_host_port(s, rest),
            "inet" => {
                let (port, host) = rest
                    .split_once('@')
                    .ok_or_else(|| EndpointError::MissingHost(s.to_string()))?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                if host.is_empty() {
                    return Err(EndpointError::MissingHost(s.to_string()));
                }
                Ok(Endpoint::Tcp {
                    host: host.to_string(),
                    port: parse_port(s, port)?,
                })
            }
            other => Err(EndpointError::UnknownTransport(
                other.to_string(),
                s.to_string(),
            )),
        }
    }

    /// Connects to the master.
    pub(crate) async fn connect(&self) -> io::Result<Box<dyn Stream>> {
        match self {
            Endpoint::Unix(path) => Ok(Box::new(UnixStream::connect(path).await?)),
            Endpoint::Tcp { host, port } => {
                let stream = TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                Ok(Box::new(stream))
            }
        }
    }
}

/// Why this process may not open the UNIX socket at `path`, for the
/// message of a refused connect (walkT 9): who owns the socket (or the
/// directory that refuses us), with which mode, who we run as, and what
/// to change. net-snmp gives agentXPerms' owner and group to the socket
/// only: a directory it makes is root's with the directory mode, so when
/// the directory is what refuses us, the remedy is its mode or group, not
/// the agentXPerms line the user may well have already (walkAM 2).
pub(crate) fn permission_hint(path: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let who = |uid: u32| name_of("/etc/passwd", uid).unwrap_or_else(|| uid.to_string());
    let group = |gid: u32| name_of("/etc/group", gid).unwrap_or_else(|| gid.to_string());
    let owned = |what: &str, p: &std::path::Path, m: &std::fs::Metadata| {
        format!(
            "{what} {} is {}:{} {:04o}",
            p.display(),
            who(m.uid()),
            group(m.gid()),
            m.mode() & 0o7777
        )
    };
    // /proc/self belongs to this process's effective user and group.
    let (me, my_group) = std::fs::metadata("/proc/self")
        .map(|m| {
            (
                format!("{}:{}", who(m.uid()), group(m.gid())),
                group(m.gid()),
            )
        })
        .unwrap_or_else(|_| ("this user".to_string(), "GROUP".to_string()));
    let perms = format!("`agentXPerms 0660 0755 SNMPD-USER {my_group}`");
    // The socket itself, else the first directory above it we may see:
    // the one that bars the way.
    if let Ok(m) = std::fs::metadata(path) {
        return format!(
            "{} and Mailward runs as {me}: give the socket a group of that user \
             with snmpd's {perms} in snmpd.conf and restart snmpd \
             (docs/snmp.md, \"Setting up snmpd\")",
            owned("the socket", path, &m)
        );
    }
    let Some((dir, m)) = path
        .ancestors()
        .skip(1)
        .find_map(|dir| std::fs::metadata(dir).ok().map(|m| (dir, m)))
    else {
        return format!(
            "the socket {} cannot be seen and Mailward runs as {me} \
             (docs/snmp.md, \"Setting up snmpd\")",
            path.display()
        );
    };
    // With group search permission, the group is enough; else the mode.
    let now = if m.mode() & 0o010 != 0 {
        format!("chgrp {my_group} {}", dir.display())
    } else {
        format!("chmod 0755 {}", dir.display())
    };
    format!(
        "{} and Mailward runs as {me}: snmpd gives agentXPerms' group to the socket only, \
         never to its directory, so open the directory now (`{now}`) and have snmpd \
         create it 0755 with {perms} in snmpd.conf (docs/snmp.md, \"Setting up snmpd\")",
        owned("its directory", dir, &m),
    )
}

/// The name of `id` in an /etc/passwd-style file (`name:x:id:...`).
fn name_of(file: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let found = fields.nth(1)?.parse::<u32>().ok()? == id;
        found.then(|| name.to_string())
    })
}

fn parse_host_port(whole: &str, rest: &str) -> Result<Endpoint, EndpointError> {
    let (host, port) = if let Some(after) = rest.strip_prefix('[') {
        let (host, tail) = after
            .split_once(']')
            .ok_or_else(|| EndpointError::MissingHost(whole.to_string()))?;
        match tail.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if tail.is_empty() => (host, None),
            None => return Err(EndpointError::BadPort(whole.to_string())),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(EndpointError::MissingHost(whole.to_string()));
    }
    let port = match port {
        Some(p) => parse_port(whole, p)?,
        None => AGENTX_TCP_PORT,
    };
    Ok(Endpoint::Tcp {
        host: host.to_string(),
        port,
    })
}

fn parse_port(whole: &str, port: &str) -> Result<u16, EndpointError> {
    match port.parse::<u16>() {
        Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(EndpointError::BadPort(whole.to_string())),
    }
}

impl std::str::FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Endpoint, EndpointError> {
        Endpoint::parse(s)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
        }
    }
}

/// A connected byte stream to the master (UNIX or TCP).
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(p: &str) -> Endpoint {
        Endpoint::Unix(PathBuf::from(p))
    }

    fn tcp(h: &str, port: u16) -> Endpoint {
        Endpoint::Tcp {
            host: h.to_string(),
            port,
        }
    }

    #[test]
    fn parses_every_form() {
        let cases = [
            ("/var/agentx/master", unix("/var/agentx/master")),
            ("unix:/var/agentx/master", unix("/var/agentx/master")),
            ("local:/tmp/x.sock", unix("/tmp/x.sock")),
            ("tcp:localhost:705", tcp("localhost", 705)),
            ("tcp:127.0.0.1:7050", tcp("127.0.0.1", 7050)),
            ("tcp:localhost", tcp("localhost", 705)),
            ("tcp:[::1]:705", tcp("::1", 705)),
            ("tcp6:[::1]", tcp("::1", 705)),
            ("inet:705@127.0.0.1", tcp("127.0.0.1", 705)),
            ("inet:7050@localhost", tcp("localhost", 7050)),
            ("  TCP:host:1  ", tcp("host", 1)),
        ];
        for (text, want) in cases {
            assert_eq!(Endpoint::parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_bad_forms() {
        assert_eq!(Endpoint::parse(""), Err(EndpointError::Empty));
        assert!(matches!(
            Endpoint::parse("udp:host:161"),
            Err(EndpointError::UnknownTransport(..))
        ));
        assert!(matches!(
            Endpoint::parse("relative/path"),
            Err(EndpointError::NotAnAddress(_))
        ));
        assert_eq!(
            Endpoint::parse("off").map_err(|e| e.to_string()),
            Err(
                "\"off\" is not an AgentX address (unix:/path, /path, tcp:HOST:PORT, \
                 local:/path or inet:PORT@HOST expected)"
                    .to_string()
            )
        );
        assert!(matches!(
            Endpoint::parse("unix:relative"),
            Err(EndpointError::BadPath(_))
        ));
        assert!(matches!(
            Endpoint::parse("unix:"),
            Err(EndpointError::BadPath(_))
        ));
        assert!(matches!(
            Endpoint::parse("tcp::705"),
            Err(EndpointError::MissingHost(_))
        ));
        assert!(matches!(
            Endpoint::parse("tcp:host:0"),
            Err(EndpointError::BadPort(_))
        ));
        assert!(matches!(
            Endpoint::parse("tcp:host:70000"),
            Err(EndpointError::BadPort(_))
        ));
        assert!(matches!(
            Endpoint::parse("tcp:host:+7"),
            Err(EndpointError::BadPort(_))
        ));
        assert!(matches!(
            Endpoint::parse("tcp:[::1]x"),
            Err(EndpointError::BadPort(_))
        ));
        assert!(matches!(
            Endpoint::parse("inet:705"),
            Err(EndpointError::MissingHost(_))
        ));
        assert!(matches!(
            Endpoint::parse("inet:x@host"),
            Err(EndpointError::BadPort(_))
        ));
    }

    #[test]
    fn displays_canonically() {
        assert_eq!(unix("/a/b").to_string(), "unix:/a/b");
        assert_eq!(tcp("localhost", 705).to_string(), "tcp:localhost:705");
        assert_eq!(tcp("::1", 705).to_string(), "tcp:[::1]:705");
        for text in ["unix:/a/b", "tcp:localhost:705", "tcp:[::1]:705"] {
            assert_eq!(Endpoint::parse(text).unwrap().to_string(), text);
        }
    }
}
