//! The responses a filter sends (SMFIR_*) and their encoding into whole
//! packets. Encoding refuses what the MTA would misread rather than send
//! it: a NUL inside a string (it would end the string early), line breaks
//! where the MTA expects one line (an envelope address, a quarantine
//! reason, a reply), a header name that is not a header name, and data
//! over [`CHUNK_SIZE`]. Not implemented: SMFIR_SETSYMLIST (macro lists in
//! the negotiation reply), SMFIR_CONN_FAIL, SMFIR_SHUTDOWN and multi-line
//! replies (`smfi_setmlreply`).

use crate::negotiate::OptNeg;
use crate::wire::frame;

/// The most data one response may carry, and the size of the chunks
/// [`replace_body`] cuts: libmilter's MILTER_CHUNK_SIZE, which is also
/// the default data limit of Sendmail's side (MILTER_MAX_DATA_SIZE).
pub const CHUNK_SIZE: usize = 65535;

/// Why a response could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A NUL byte inside a NUL-terminated string.
    #[error("{what} contains a NUL byte")]
    Nul {
        /// The field.
        what: &'static str,
    },
    /// A CR or LF in a one-line field.
    #[error("{what} contains a line break")]
    LineBreak {
        /// The field.
        what: &'static str,
    },
    /// Not an RFC 5322 field name (printable ASCII but ':', at least one).
    #[error("{name:?} is not a header field name")]
    BadHeaderName {
        /// The name (lossy).
        name: String,
    },
    /// A header value with a CR, or an LF not followed by a space or tab.
    #[error("header value: a line break must be a single LF followed by a space or a tab")]
    BadHeaderFolding,
    /// An SMTP reply that libmilter or the MTA would refuse.
    #[error("{reply:?} is not a usable SMTP reply: {reason}")]
    BadReply {
        /// The reply as given.
        reply: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Data over [`CHUNK_SIZE`].
    #[error("{what} of {len} bytes is over the limit of {max} bytes per packet")]
    TooLong {
        /// The response.
        what: &'static str,
        /// Its data length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// An SMTP reply for SMFIR_REPLYCODE, checked when it is made: a 4xx or
/// 5xx code, one space, then text on one line. Made with [`ReplyCode::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyCode {
    /// The reply with every '%' doubled, as sent.
    wire: String,
}

impl ReplyCode {
    /// Checks a reply such as `"550 5.7.1 Message refused"` and escapes it.
    ///
    /// Refused: a code that is not three digits starting with 4 or 5; no
    /// space after the code (a '-' would announce a continuation line, and
    /// multi-line replies are not supported); NUL, CR or LF in the text;
    /// an enhanced status code whose class differs from the reply's (Postfix
    /// rejects "550 4.7.1"). Every '%' is doubled, because Sendmail uses
    /// the reply as a format string and Postfix undoes the doubling.
    pub fn new(reply: &str) -> Result<ReplyCode, EncodeError> {
        let bad = |reason| EncodeError::BadReply {
            reply: reply.to_owned(),
            reason,
        };
        let b = reply.as_bytes();
        let class = match b.first() {
            Some(&c @ (b'4' | b'5')) => c,
            _ => return Err(bad("the code must start with 4 or 5")),
        };
        if !b
            .get(1..3)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        {
            return Err(bad("the code must be three digits"));
        }
        if b.get(3) != Some(&b' ') {
            return Err(bad("the code must be followed by a space"));
        }
        if b.contains(&0) {
            return Err(bad("it contains a NUL byte"));
        }
        if b.contains(&b'\r') || b.contains(&b'\n') {
            return Err(bad("it contains a line break"));
        }
        if let Some(&d) = b.get(4) {
            if d.is_ascii_digit() && d != class {
                return Err(bad(
                    "the enhanced status code's class differs from the code's",
                ));
            }
        }
        Ok(ReplyCode {
            wire: reply.replace('%', "%%"),
        })
    }

    /// The reply as sent, '%' doubled.
    pub fn as_wire(&self) -> &str {
        &self.wire
    }
}

/// A response to the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// 'O': the negotiation reply (see [`negotiate`](crate::negotiate)).
    OptNeg(OptNeg),
    /// 'c' SMFIR_CONTINUE: go on with the next step.
    Continue,
    /// 'a' SMFIR_ACCEPT: accept the message (or, at connect and HELO, the
    /// connection) without further filtering.
    Accept,
    /// 'r' SMFIR_REJECT: reject with the MTA's default 5xx reply.
    Reject,
    /// 't' SMFIR_TEMPFAIL: reject with the MTA's default 4xx reply.
    Tempfail,
    /// 'd' SMFIR_DISCARD: accept the message and drop it.
    Discard,
    /// 'p' SMFIR_PROGRESS: still working; resets the MTA's timeout.
    Progress,
    /// 's' SMFIR_SKIP: send no more of this step (body chunks); only if
    /// SKIP was negotiated.
    Skip,
    /// 'y' SMFIR_REPLYCODE: reject (5xx) or tempfail (4xx) with this reply.
    ReplyCode(ReplyCode),
    /// 'h' SMFIR_ADDHEADER: append a header (needs ADDHDRS).
    AddHeader {
        /// The field name.
        name: String,
        /// The value; folded lines separated by a bare LF plus a space or
        /// tab (the MTA adds the CR).
        value: Vec<u8>,
    },
    /// 'm' SMFIR_CHGHEADER: change or delete a header (needs CHGHDRS).
    ChangeHeader {
        /// Which of the headers of that name, from 1.
        index: u32,
        /// The field name.
        name: String,
        /// The new value; empty deletes the header.
        value: Vec<u8>,
    },
    /// 'i' SMFIR_INSHEADER: insert a header at a position (needs ADDHDRS).
    InsertHeader {
        /// Where among all headers, 0 for the top.
        index: u32,
        /// The field name.
        name: String,
        /// The value, as for `AddHeader`.
        value: Vec<u8>,
    },
    /// 'b' SMFIR_REPLBODY: one chunk of the new body (needs CHGBODY); see
    /// [`replace_body`] for a whole body.
    ReplaceBody(Vec<u8>),
    /// 'q' SMFIR_QUARANTINE: hold the message (needs QUARANTINE).
    Quarantine {
        /// Why, for the operator.
        reason: String,
    },
    /// '+' SMFIR_ADDRCPT: add a recipient (needs ADDRCPT).
    AddRcpt {
        /// The address, in angle brackets.
        rcpt: String,
    },
    /// '2' SMFIR_ADDRCPT_PAR: add a recipient with ESMTP parameters (needs
    /// ADDRCPT_PAR).
    AddRcptPar {
        /// The address, in angle brackets.
        rcpt: String,
        /// ESMTP parameters, space-separated.
        args: Option<String>,
    },
    /// '-' SMFIR_DELRCPT: remove a recipient (needs DELRCPT).
    DelRcpt {
        /// The address exactly as received in SMFIC_RCPT.
        rcpt: String,
    },
    /// 'e' SMFIR_CHGFROM: change the envelope sender (needs CHGFROM).
    ChangeFrom {
        /// The new sender, in angle brackets.
        sender: String,
        /// ESMTP parameters, space-separated.
        args: Option<String>,
    },
}

impl Response {
    /// The command byte.
    pub fn code(&self) -> u8 {
        match self {
            Response::OptNeg(_) => b'O',
            Response::Continue => b'c',
            Response::Accept => b'a',
            Response::Reject => b'r',
            Response::Tempfail => b't',
            Response::Discard => b'd',
            Response::Progress => b'p',
            Response::Skip => b's',
            Response::ReplyCode(_) => b'y',
            Response::AddHeader { .. } => b'h',
            Response::ChangeHeader { .. } => b'm',
            Response::InsertHeader { .. } => b'i',
            Response::ReplaceBody(_) => b'b',
            Response::Quarantine { .. } => b'q',
            Response::AddRcpt { .. } => b'+',
            Response::AddRcptPar { .. } => b'2',
            Response::DelRcpt { .. } => b'-',
            Response::ChangeFrom { .. } => b'e',
        }
    }

    /// Appends the whole packet (length, command byte, data) to `out`.
    /// On error `out` is left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut data = Vec::new();
        match self {
            Response::OptNeg(o) => {
                data.extend_from_slice(&o.version.to_be_bytes());
                data.extend_from_slice(&o.actions.bits().to_be_bytes());
                data.extend_from_slice(&o.protocol.bits().to_be_bytes());
            }
            Response::Continue
            | Response::Accept
            | Response::Reject
            | Response::Tempfail
            | Response::Discard
            | Response::Progress
            | Response::Skip => {}
            Response::ReplyCode(r) => cstr(&mut data, r.as_wire().as_bytes()),
            Response::AddHeader { name, value } => header(&mut data, None, name, value)?,
            Response::ChangeHeader { index, name, value }
            | Response::InsertHeader { index, name, value } => {
                header(&mut data, Some(*index), name, value)?
            }
            Response::ReplaceBody(chunk) => data.extend_from_slice(chunk),
            Response::Quarantine { reason } => {
                cstr(&mut data, one_line("quarantine reason", reason)?)
            }
            Response::AddRcpt { rcpt } | Response::DelRcpt { rcpt } => {
                cstr(&mut data, one_line("recipient", rcpt)?)
            }
            Response::AddRcptPar { rcpt, args } => {
                cstr(&mut data, one_line("recipient", rcpt)?);
                if let Some(args) = args {
                    cstr(&mut data, one_line("ESMTP arguments", args)?);
                }
            }
            Response::ChangeFrom { sender, args } => {
                cstr(&mut data, one_line("sender", sender)?);
                if let Some(args) = args {
                    cstr(&mut data, one_line("ESMTP arguments", args)?);
                }
            }
        }
        if data.len() > CHUNK_SIZE {
            return Err(EncodeError::TooLong {
                what: self.name(),
                len: data.len(),
                max: CHUNK_SIZE,
            });
        }
        frame(out, self.code(), &data);
        Ok(())
    }

    /// libmilter's name of the response, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Response::OptNeg(_) => "SMFIC_OPTNEG",
            Response::Continue => "SMFIR_CONTINUE",
            Response::Accept => "SMFIR_ACCEPT",
            Response::Reject => "SMFIR_REJECT",
            Response::Tempfail => "SMFIR_TEMPFAIL",
            Response::Discard => "SMFIR_DISCARD",
            Response::Progress => "SMFIR_PROGRESS",
            Response::Skip => "SMFIR_SKIP",
            Response::ReplyCode(_) => "SMFIR_REPLYCODE",
            Response::AddHeader { .. } => "SMFIR_ADDHEADER",
            Response::ChangeHeader { .. } => "SMFIR_CHGHEADER",
            Response::InsertHeader { .. } => "SMFIR_INSHEADER",
            Response::ReplaceBody(_) => "SMFIR_REPLBODY",
            Response::Quarantine { .. } => "SMFIR_QUARANTINE",
            Response::AddRcpt { .. } => "SMFIR_ADDRCPT",
            Response::AddRcptPar { .. } => "SMFIR_ADDRCPT_PAR",
            Response::DelRcpt { .. } => "SMFIR_DELRCPT",
            Response::ChangeFrom { .. } => "SMFIR_CHGFROM",
        }
    }
}

/// The SMFIR_REPLBODY responses that replace the body with `body`: chunks
/// of at most [`CHUNK_SIZE`] bytes, in order. An empty body gives one
/// empty chunk (Postfix then replaces the body with nothing).
pub fn replace_body(body: &[u8]) -> Vec<Response> {
    if body.is_empty() {
        return vec![Response::ReplaceBody(Vec::new())];
    }
    body.chunks(CHUNK_SIZE)
        .map(|chunk| Response::ReplaceBody(chunk.to_vec()))
        .collect()
}

/// Appends a string and its NUL (the caller has checked it has none).
fn cstr(data: &mut Vec<u8>, s: &[u8]) {
    data.extend_from_slice(s);
    data.push(0);
}

/// Checks a one-line field: no NUL, no CR, no LF.
fn one_line<'a>(what: &'static str, s: &'a str) -> Result<&'a [u8], EncodeError> {
    let b = s.as_bytes();
    if b.contains(&0) {
        return Err(EncodeError::Nul { what });
    }
    if b.contains(&b'\r') || b.contains(&b'\n') {
        return Err(EncodeError::LineBreak { what });
    }
    Ok(b)
}

/// Appends `[index] name\0 value\0` after checking name and value.
///
/// A name must be an RFC 5322 field name: one or more printable ASCII
/// characters other than ':'. A value may contain 8-bit bytes, and line
/// breaks only as libmilter documents them for `smfi_addheader`: an LF
/// followed by a space or tab, without a CR (the MTA adds the CR). Any CR,
/// and any LF not followed by a space or tab, is refused: either would
/// let the value end the header and start another.
fn header(
    data: &mut Vec<u8>,
    index: Option<u32>,
    name: &str,
    value: &[u8],
) -> Result<(), EncodeError> {
    if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(EncodeError::BadHeaderName {
            name: name.to_owned(),
        });
    }
    if value.contains(&0) {
        return Err(EncodeError::Nul {
            what: "header value",
        });
    }
    for (i, &b) in value.iter().enumerate() {
        let folded = match b {
            b'\r' => false,
            b'\n' => matches!(value.get(i + 1), Some(b' ' | b'\t')),
            _ => true,
        };
        if !folded {
            return Err(EncodeError::BadHeaderFolding);
        }
    }
    if let Some(index) = index {
        data.extend_from_slice(&index.to_be_bytes());
    }
    cstr(data, name.as_bytes());
    cstr(data, value);
    Ok(())
}
