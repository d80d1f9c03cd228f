//! The commands an MTA sends (SMFIC_*), decoded from one packet's command
//! byte and data (as `wire.rs` frames them). Decoding is total: any bytes
//! give a [`Command`] or a typed [`DecodeError`], never a panic, and never
//! allocate more than the bytes given.
//!
//! Decoding is strict where libmilter is loose, because the MTAs we talk
//! to (Postfix, Sendmail) never send the loose forms: bytes after the last
//! field are an error, except after SMFIC_OPTNEG's three words, which
//! libmilter explicitly tolerates. Text is kept as bytes where it may be
//! 8-bit (header values, body); elsewhere it is a `String` by lossy UTF-8.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::flags::{Actions, Protocol};
use crate::negotiate::OptNeg;

/// Why a packet is not a valid command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No command byte at all.
    #[error("empty packet (no command byte)")]
    Empty,
    /// A command byte that is not an SMFIC_* command.
    #[error("unknown milter command {0:#04x} ({c:?})", c = char::from(*.0))]
    UnknownCommand(u8),
    /// Too few bytes for a fixed-size field.
    #[error("command '{command}': {what} needs {needed} bytes, {available} left")]
    Truncated {
        /// The command byte.
        command: char,
        /// The field being read.
        what: &'static str,
        /// Its size.
        needed: usize,
        /// The bytes left.
        available: usize,
    },
    /// A string without its NUL terminator.
    #[error("command '{command}': {what} is not NUL-terminated")]
    MissingNul {
        /// The command byte.
        command: char,
        /// The field being read.
        what: &'static str,
    },
    /// Bytes after the command's last field.
    #[error("command '{command}': {count} bytes after the last field")]
    TrailingBytes {
        /// The command byte.
        command: char,
        /// How many.
        count: usize,
    },
    /// SMFIC_MACRO for a command that has no macros.
    #[error("macros for unknown command {0:#04x} ({c:?})", c = char::from(*.0))]
    UnknownMacroCommand(u8),
    /// SMFIC_MACRO whose last name has no value.
    #[error("macro {name:?} without a value")]
    UnpairedMacro {
        /// The name.
        name: String,
    },
    /// SMFIC_CONNECT with an address family other than U, L, 4 and 6.
    #[error("connect: unknown address family {0:#04x} ({c:?})", c = char::from(*.0))]
    UnknownFamily(u8),
    /// SMFIC_CONNECT with an address that does not parse for its family.
    #[error("connect: {address:?} is not an IPv{family} address")]
    BadAddress {
        /// 4 or 6.
        family: char,
        /// The text sent (lossy UTF-8).
        address: String,
    },
}

/// Where the SMTP client connected from (SMFIC_CONNECT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    /// Family 'U': the MTA does not know (e.g. a pipe).
    Unknown,
    /// Family 'L': a UNIX-domain socket. The port the MTA sends (0) is
    /// dropped.
    Unix {
        /// The socket path or whatever the MTA sends as the address.
        path: String,
    },
    /// Family '4' or '6'.
    Inet {
        /// The client's address; an "IPv6:" prefix (Sendmail's address
        /// syntax) is removed before parsing.
        ip: IpAddr,
        /// The client's port, 0 when the MTA does not know it.
        port: u16,
    },
}

/// SMFIC_CONNECT: the client's host name and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The client's host name as the MTA knows it: the verified reverse
    /// name, or the address in brackets (`[192.0.2.1]`) when there is none.
    pub hostname: String,
    /// The client's address.
    pub client: Client,
}

/// SMFIC_MACRO: values of the MTA's macros, sent just before the command
/// they belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Macros {
    /// The command byte the macros are for: one of C H M R T L N E B U
    /// (libmilter itself only keeps C H M R T N E).
    pub for_command: u8,
    /// (name, value) pairs in the order sent. Names are kept as sent:
    /// `j`, `_`, `{client_addr}`.
    pub pairs: Vec<(String, String)>,
}

impl Macros {
    /// The value of the macro `name`, as sent (`"{daemon_name}"` and
    /// `"daemon_name"` are different names).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A command from the MTA.
///
/// Which commands get a reply (see [`Command::expects_reply`]):
///
/// | command | reply |
/// | --- | --- |
/// | `OptNeg` | always (`Response::OptNeg`) |
/// | `Macro`, `Abort`, `Quit`, `QuitNc` | never |
/// | `Connect`, `Helo`, `Mail`, `Rcpt`, `Data`, `Header`, `EndOfHeaders`, `Body`, `Unknown` | unless the matching `NR_*` protocol flag was negotiated |
/// | `EndOfMessage` | always (after any modification responses) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// 'O' SMFIC_OPTNEG: the MTA's offer.
    OptNeg(OptNeg),
    /// 'D' SMFIC_MACRO.
    Macro(Macros),
    /// 'C' SMFIC_CONNECT.
    Connect(Connect),
    /// 'H' SMFIC_HELO: the HELO/EHLO argument.
    Helo {
        /// As the client sent it.
        name: String,
    },
    /// 'M' SMFIC_MAIL.
    Mail {
        /// The sender in angle brackets, `<>` for bounces.
        sender: String,
        /// The ESMTP parameters (`SIZE=1234`, `BODY=8BITMIME`).
        args: Vec<String>,
    },
    /// 'R' SMFIC_RCPT.
    Rcpt {
        /// The recipient in angle brackets.
        recipient: String,
        /// The ESMTP parameters (`NOTIFY=NEVER`).
        args: Vec<String>,
    },
    /// 'T' SMFIC_DATA: the client sent DATA.
    Data,
    /// 'L' SMFIC_HEADER: one header field (folded lines separated by LF).
    Header {
        /// The field name.
        name: String,
        /// The value, without the space after the colon unless
        /// HDR_LEADSPC was negotiated; 8-bit bytes kept.
        value: Vec<u8>,
    },
    /// 'N' SMFIC_EOH: end of headers.
    EndOfHeaders,
    /// 'B' SMFIC_BODY: a chunk of the body (CRLF line ends), at most
    /// 65535 bytes unless a larger size was negotiated.
    Body(Vec<u8>),
    /// 'E' SMFIC_BODYEOB: end of message, possibly with a last chunk
    /// (usually empty). Modifications are allowed only in reply to this.
    EndOfMessage(Vec<u8>),
    /// 'A' SMFIC_ABORT: the current message is abandoned; the connection
    /// goes on.
    Abort,
    /// 'Q' SMFIC_QUIT: the connection ends.
    Quit,
    /// 'K' SMFIC_QUIT_NC: this SMTP connection ends and a new one follows
    /// on the same socket (starting with SMFIC_CONNECT).
    QuitNc,
    /// 'U' SMFIC_UNKNOWN: an SMTP command the MTA does not know.
    Unknown {
        /// The command line as the client sent it.
        line: String,
    },
}

impl Command {
    /// Decodes one packet: the command byte, then its data (what
    /// [`read_packet`](crate::read_packet) returns).
    pub fn decode(packet: &[u8]) -> Result<Command, DecodeError> {
        let (&code, data) = packet.split_first().ok_or(DecodeError::Empty)?;
        let mut r = Reader {
            buf: data,
            command: char::from(code),
        };
        let command = match code {
            b'O' => {
                let version = r.u32("version")?;
                let actions = Actions(r.u32("actions")?);
                let protocol = Protocol(r.u32("protocol")?);
                // libmilter reads the first three words and ignores the
                // rest (room for later extensions).
                r.rest();
                Command::OptNeg(OptNeg {
                    version,
                    actions,
                    protocol,
                })
            }
            b'D' => Command::Macro(decode_macros(&mut r)?),
            b'C' => Command::Connect(decode_connect(&mut r)?),
            b'H' => Command::Helo {
                name: r.string("HELO name")?,
            },
            b'M' => {
                let sender = r.string("sender")?;
                Command::Mail {
                    sender,
                    args: r.strings("ESMTP argument")?,
                }
            }
            b'R' => {
                let recipient = r.string("recipient")?;
                Command::Rcpt {
                    recipient,
                    args: r.strings("ESMTP argument")?,
                }
            }
            b'T' => Command::Data,
            b'L' => {
                let name = r.string("header name")?;
                Command::Header {
                    name,
                    value: r.cstr("header value")?.to_vec(),
                }
            }
            b'N' => Command::EndOfHeaders,
            b'B' => Command::Body(r.rest().to_vec()),
            b'E' => Command::EndOfMessage(r.rest().to_vec()),
            b'A' => Command::Abort,
            b'Q' => Command::Quit,
            b'K' => Command::QuitNc,
            b'U' => Command::Unknown {
                line: r.string("command")?,
            },
            other => return Err(DecodeError::UnknownCommand(other)),
        };
        r.finish()?;
        Ok(command)
    }

    /// Whether the MTA waits for a reply to this command, given the
    /// protocol flags of the session (the `protocol` of the filter's
    /// negotiation reply, not the MTA's offer).
    pub fn expects_reply(&self, protocol: Protocol) -> bool {
        let no_reply_flag = match self {
            Command::OptNeg(_) | Command::EndOfMessage(_) => return true,
            Command::Macro(_) | Command::Abort | Command::Quit | Command::QuitNc => return false,
            Command::Connect(_) => Protocol::NR_CONN,
            Command::Helo { .. } => Protocol::NR_HELO,
            Command::Mail { .. } => Protocol::NR_MAIL,
            Command::Rcpt { .. } => Protocol::NR_RCPT,
            Command::Data => Protocol::NR_DATA,
            Command::Header { .. } => Protocol::NR_HDR,
            Command::EndOfHeaders => Protocol::NR_EOH,
            Command::Body(_) => Protocol::NR_BODY,
            Command::Unknown { .. } => Protocol::NR_UNKN,
        };
        !protocol.contains(no_reply_flag)
    }
}

/// The commands SMFIC_MACRO may carry macros for.
const MACRO_COMMANDS: &[u8] = b"CHMRTLNEBU";

fn decode_macros(r: &mut Reader<'_>) -> Result<Macros, DecodeError> {
    let for_command = r.u8("macro command")?;
    if !MACRO_COMMANDS.contains(&for_command) {
        return Err(DecodeError::UnknownMacroCommand(for_command));
    }
    let mut pairs = Vec::new();
    while !r.is_empty() {
        let name = r.string("macro name")?;
        if r.is_empty() {
            // A name without a value: Postfix and Sendmail never send one,
            // so it means the packet is not what we think it is.
            return Err(DecodeError::UnpairedMacro { name });
        }
        let value = r.string("macro value")?;
        pairs.push((name, value));
    }
    Ok(Macros { for_command, pairs })
}

fn decode_connect(r: &mut Reader<'_>) -> Result<Connect, DecodeError> {
    let hostname = r.string("hostname")?;
    let family = r.u8("address family")?;
    let client = match family {
        b'U' => Client::Unknown,
        b'L' => {
            let _port = r.u16("port")?;
            Client::Unix {
                path: r.string("socket path")?,
            }
        }
        b'4' | b'6' => {
            let port = r.u16("port")?;
            let text = r.cstr("address")?;
            Client::Inet {
                ip: parse_ip(family, text)?,
                port,
            }
        }
        other => return Err(DecodeError::UnknownFamily(other)),
    };
    Ok(Connect { hostname, client })
}

/// Parses the address text of family '4' or '6'.
fn parse_ip(family: u8, text: &[u8]) -> Result<IpAddr, DecodeError> {
    let bad = || DecodeError::BadAddress {
        family: char::from(family),
        address: String::from_utf8_lossy(text).into_owned(),
    };
    let s = std::str::from_utf8(text).map_err(|_| bad())?;
    if family == b'4' {
        return s.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| bad());
    }
    let s = match s.split_at_checked(5) {
        Some((prefix, rest)) if prefix.eq_ignore_ascii_case("IPv6:") => rest,
        _ => s,
    };
    s.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| bad())
}

/// Reads the data of one packet. Every read checks what is left.
struct Reader<'a> {
    /// What is left to read.
    buf: &'a [u8],
    /// The command byte, for errors.
    command: char,
}

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let Some((head, tail)) = self.buf.split_first_chunk::<N>() else {
            return Err(DecodeError::Truncated {
                command: self.command,
                what,
                needed: N,
                available: self.buf.len(),
            });
        };
        self.buf = tail;
        Ok(*head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// The bytes up to the next NUL, which is consumed.
    fn cstr(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let Some(end) = self.buf.iter().position(|&b| b == 0) else {
            return Err(DecodeError::MissingNul {
                command: self.command,
                what,
            });
        };
        let (s, tail) = self.buf.split_at(end);
        // tail starts with the NUL.
        self.buf = tail.get(1..).unwrap_or_default();
        Ok(s)
    }

    /// A NUL-terminated string, lossy UTF-8.
    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        Ok(String::from_utf8_lossy(self.cstr(what)?).into_owned())
    }

    /// NUL-terminated strings up to the end of the data.
    fn strings(&mut self, what: &'static str) -> Result<Vec<String>, DecodeError> {
        let mut list = Vec::new();
        while !self.is_empty() {
            list.push(self.string(what)?);
        }
        Ok(list)
    }

    /// Everything left.
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Succeeds if everything was read.
    fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                command: self.command,
                count: self.buf.len(),
            })
        }
    }
}
