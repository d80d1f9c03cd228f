//! AgentX PDUs (RFC 2741 section 6): the 20-byte header, every PDU a
//! subagent sends or receives, and their encoding and decoding. Decoding
//! honours each PDU's NETWORK_BYTE_ORDER flag and is total: any bytes give
//! a `Pdu` or a typed `DecodeError`, and a payload over [`MAX_PAYLOAD`] is
//! refused from its header alone. Encoding always uses network byte order.
//! This module does no I/O; `session.rs` frames PDUs on a socket.

use std::fmt;

use crate::oid::Oid;
use crate::value::VarBind;
use crate::wire::{Reader, Writer};

/// The size of the AgentX header.
pub const HEADER_LEN: usize = 20;

/// The largest payload accepted or sent (1 MiB). A header that declares
/// more is an error, and the session is reset: no master sends that much
/// to a subagent, and it bounds what one PDU can make us allocate.
pub const MAX_PAYLOAD: u32 = 1 << 20;

/// The protocol version of RFC 2741.
pub const VERSION: u8 = 1;

/// The `h.flags` bits (RFC 2741 section 6.1).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// No flag.
    pub const NONE: Flags = Flags(0);
    /// Register-PDU: `r.subtree` is a fully qualified instance.
    pub const INSTANCE_REGISTRATION: Flags = Flags(0x01);
    /// IndexAllocate-PDU: allocate a never-used index.
    pub const NEW_INDEX: Flags = Flags(0x02);
    /// IndexAllocate-PDU: allocate any unused index.
    pub const ANY_INDEX: Flags = Flags(0x04);
    /// A context Octet String follows the header.
    pub const NON_DEFAULT_CONTEXT: Flags = Flags(0x08);
    /// Multi-byte integers are big-endian.
    pub const NETWORK_BYTE_ORDER: Flags = Flags(0x10);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags plus `other`.
    pub fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// These flags less `other`.
    pub fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({:#04x})", self.0)
    }
}

/// The PDU types (`h.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PduType {
    Open = 1,
    Close = 2,
    Register = 3,
    Unregister = 4,
    Get = 5,
    GetNext = 6,
    GetBulk = 7,
    TestSet = 8,
    CommitSet = 9,
    UndoSet = 10,
    CleanupSet = 11,
    Notify = 12,
    Ping = 13,
    IndexAllocate = 14,
    IndexDeallocate = 15,
    AddAgentCaps = 16,
    RemoveAgentCaps = 17,
    Response = 18,
}

impl PduType {
    /// The type for an `h.type` code.
    pub fn from_u8(code: u8) -> Option<PduType> {
        use PduType::*;
        Some(match code {
            1 => Open,
            2 => Close,
            3 => Register,
            4 => Unregister,
            5 => Get,
            6 => GetNext,
            7 => GetBulk,
            8 => TestSet,
            9 => CommitSet,
            10 => UndoSet,
            11 => CleanupSet,
            12 => Notify,
            13 => Ping,
            14 => IndexAllocate,
            15 => IndexDeallocate,
            16 => AddAgentCaps,
            17 => RemoveAgentCaps,
            18 => Response,
            _ => return None,
        })
    }

    /// Whether a PDU of this type carries a context when
    /// NON_DEFAULT_CONTEXT is set (section 6.1.1).
    pub fn has_context(self) -> bool {
        use PduType::*;
        matches!(
            self,
            Register
                | Unregister
                | Get
                | GetNext
                | GetBulk
                | TestSet
                | Notify
                | Ping
                | IndexAllocate
                | IndexDeallocate
                | AddAgentCaps
                | RemoveAgentCaps
        )
    }
}

/// `res.error` of a Response-PDU: SNMP error-status values (RFC 3416) and
/// the AgentX ones (RFC 2741 section 6.2.16).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ErrorStatus(pub u16);

impl ErrorStatus {
    pub const NO_ERROR: ErrorStatus = ErrorStatus(0);
    pub const TOO_BIG: ErrorStatus = ErrorStatus(1);
    pub const GEN_ERR: ErrorStatus = ErrorStatus(5);
    pub const NO_ACCESS: ErrorStatus = ErrorStatus(6);
    pub const WRONG_TYPE: ErrorStatus = ErrorStatus(7);
    pub const WRONG_LENGTH: ErrorStatus = ErrorStatus(8);
    pub const WRONG_ENCODING: ErrorStatus = ErrorStatus(9);
    pub const WRONG_VALUE: ErrorStatus = ErrorStatus(10);
    pub const NO_CREATION: ErrorStatus = ErrorStatus(11);
    pub const INCONSISTENT_VALUE: ErrorStatus = ErrorStatus(12);
    pub const RESOURCE_UNAVAILABLE: ErrorStatus = ErrorStatus(13);
    pub const COMMIT_FAILED: ErrorStatus = ErrorStatus(14);
    pub const UNDO_FAILED: ErrorStatus = ErrorStatus(15);
    pub const AUTHORIZATION_ERROR: ErrorStatus = ErrorStatus(16);
    pub const NOT_WRITABLE: ErrorStatus = ErrorStatus(17);
    pub const INCONSISTENT_NAME: ErrorStatus = ErrorStatus(18);
    pub const OPEN_FAILED: ErrorStatus = ErrorStatus(256);
    pub const NOT_OPEN: ErrorStatus = ErrorStatus(257);
    pub const INDEX_WRONG_TYPE: ErrorStatus = ErrorStatus(258);
    pub const INDEX_ALREADY_ALLOCATED: ErrorStatus = ErrorStatus(259);
    pub const INDEX_NONE_AVAILABLE: ErrorStatus = ErrorStatus(260);
    pub const INDEX_NOT_ALLOCATED: ErrorStatus = ErrorStatus(261);
    pub const UNSUPPORTED_CONTEXT: ErrorStatus = ErrorStatus(262);
    pub const DUPLICATE_REGISTRATION: ErrorStatus = ErrorStatus(263);
    pub const UNKNOWN_REGISTRATION: ErrorStatus = ErrorStatus(264);
    pub const UNKNOWN_AGENT_CAPS: ErrorStatus = ErrorStatus(265);
    pub const PARSE_ERROR: ErrorStatus = ErrorStatus(266);
    pub const REQUEST_DENIED: ErrorStatus = ErrorStatus(267);
    pub const PROCESSING_ERROR: ErrorStatus = ErrorStatus(268);

    /// The RFC name of this status, or "unknown".
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "noError",
            1 => "tooBig",
            2 => "noSuchName",
            3 => "badValue",
            4 => "readOnly",
            5 => "genErr",
            6 => "noAccess",
            7 => "wrongType",
            8 => "wrongLength",
            9 => "wrongEncoding",
            10 => "wrongValue",
            11 => "noCreation",
            12 => "inconsistentValue",
            13 => "resourceUnavailable",
            14 => "commitFailed",
            15 => "undoFailed",
            16 => "authorizationError",
            17 => "notWritable",
            18 => "inconsistentName",
            256 => "openFailed",
            257 => "notOpen",
            258 => "indexWrongType",
            259 => "indexAlreadyAllocated",
            260 => "indexNoneAvailable",
            261 => "indexNotAllocated",
            262 => "unsupportedContext",
            263 => "duplicateRegistration",
            264 => "unknownRegistration",
            265 => "unknownAgentCaps",
            266 => "parseError",
            267 => "requestDenied",
            268 => "processingError",
            _ => "unknown",
        }
    }

    /// Whether this is `noError` / `noAgentXError`.
    pub fn is_ok(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for ErrorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl fmt::Debug for ErrorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `c.reason` of a Close-PDU (section 6.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    Other,
    ParseError,
    ProtocolError,
    Timeouts,
    Shutdown,
    ByManager,
    /// A code RFC 2741 does not define.
    Unknown(u8),
}

impl CloseReason {
    pub fn from_u8(code: u8) -> CloseReason {
        match code {
            1 => CloseReason::Other,
            2 => CloseReason::ParseError,
            3 => CloseReason::ProtocolError,
            4 => CloseReason::Timeouts,
            5 => CloseReason::Shutdown,
            6 => CloseReason::ByManager,
            other => CloseReason::Unknown(other),
        }
    }

    pub fn to_u8(self) -> u8 {
        match self {
            CloseReason::Other => 1,
            CloseReason::ParseError => 2,
            CloseReason::ProtocolError => 3,
            CloseReason::Timeouts => 4,
            CloseReason::Shutdown => 5,
            CloseReason::ByManager => 6,
            CloseReason::Unknown(code) => code,
        }
    }
}

/// Why bytes are not a valid AgentX PDU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the construct being read needs.
    #[error("truncated PDU: {what} needs {needed} bytes, {available} left")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    /// `h.version` is not 1.
    #[error("AgentX version {0} (1 expected)")]
    BadVersion(u8),
    /// `h.payload_length` is over [`MAX_PAYLOAD`].
    #[error("declared payload of {length} bytes is over the limit of {max} bytes")]
    PayloadTooLarge { length: u32, max: u32 },
    /// `h.type` is not one of RFC 2741's.
    #[error("unknown PDU type {0}")]
    UnknownPduType(u8),
    /// `v.type` is not one of RFC 2741's.
    #[error("unknown value type {0}")]
    UnknownValueType(u16),
    /// `n_subid` over 128.
    #[error("object identifier with {0} sub-identifiers (at most 128)")]
    OidTooLong(u8),
    /// An IpAddress that is not 4 octets.
    #[error("IpAddress of {0} octets (4 expected)")]
    BadIpAddress(usize),
    /// Bytes left over after the PDU's last field.
    #[error("{0} bytes after the last field of the PDU")]
    TrailingBytes(usize),
    /// The payload given does not have the length the header declares.
    #[error("header declares a payload of {declared} bytes, {actual} given")]
    LengthMismatch { declared: u32, actual: usize },
}

/// Why a PDU could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// An OID needs more than 128 sub-identifiers on the wire.
    #[error("object identifier of {0} sub-identifiers is too long to encode (at most 128 after the 1.3.6.1.x prefix)")]
    OidTooLong(usize),
    /// The payload would be over [`MAX_PAYLOAD`].
    #[error("payload of {0} bytes is over the limit of 1 MiB")]
    PayloadTooLarge(usize),
}

/// The 20-byte header (section 6.1), as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// `h.version`, always 1 once decoded.
    pub version: u8,
    /// `h.type`, kept raw so that a PDU of an unknown type can still be
    /// answered with parseError.
    pub pdu_type: u8,
    /// `h.flags`.
    pub flags: Flags,
    /// `h.sessionID`.
    pub session_id: u32,
    /// `h.transactionID`.
    pub transaction_id: u32,
    /// `h.packetID`.
    pub packet_id: u32,
    /// `h.payload_length`, at most [`MAX_PAYLOAD`] once decoded.
    pub payload_length: u32,
}

impl Header {
    /// Decodes a header, in the byte order its flags say, and checks the
    /// version and the payload length limit.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Header, DecodeError> {
        if bytes[0] != VERSION {
            return Err(DecodeError::BadVersion(bytes[0]));
        }
        let flags = Flags(bytes[2]);
        let mut r = Reader::new(&bytes[4..], flags.contains(Flags::NETWORK_BYTE_ORDER));
        let header = Header {
            version: bytes[0],
            pdu_type: bytes[1],
            flags,
            session_id: r.u32("h.sessionID")?,
            transaction_id: r.u32("h.transactionID")?,
            packet_id: r.u32("h.packetID")?,
            payload_length: r.u32("h.payload_length")?,
        };
        if header.payload_length > MAX_PAYLOAD {
            return Err(DecodeError::PayloadTooLarge {
                length: header.payload_length,
                max: MAX_PAYLOAD,
            });
        }
        Ok(header)
    }

    /// Whether multi-byte integers of this PDU are big-endian.
    pub fn is_network_byte_order(&self) -> bool {
        self.flags.contains(Flags::NETWORK_BYTE_ORDER)
    }
}

/// A SearchRange (section 5.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SearchRange {
    /// The starting OID.
    pub start: Oid,
    /// Whether `start` itself is in the range.
    pub include: bool,
    /// The non-inclusive end; the null OID for an unbounded range.
    pub end: Oid,
}

/// Open-PDU (section 6.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// `o.timeout`: seconds the master should wait for us (0: its default).
    pub timeout: u8,
    /// `o.id`: identifies the subagent.
    pub id: Oid,
    /// `o.descr`: a DisplayString describing the subagent.
    pub description: Vec<u8>,
}

/// Close-PDU (section 6.2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    /// `c.reason`.
    pub reason: CloseReason,
}

/// Register-PDU (section 6.2.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Register {
    /// `r.context`: a non-default context, if any.
    pub context: Option<Vec<u8>>,
    /// `r.timeout`: seconds, for this region only (0: no override).
    pub timeout: u8,
    /// `r.priority`: 1..=255, smaller wins; 127 is the default.
    pub priority: u8,
    /// `r.range_subid`: 1-based index of the sub-identifier that is a range
    /// lower bound, or 0 for none.
    pub range_subid: u8,
    /// `r.subtree`.
    pub subtree: Oid,
    /// `r.upper_bound`: on the wire only when `range_subid` is not 0.
    pub upper_bound: u32,
}

/// Unregister-PDU (section 6.2.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unregister {
    /// `u.context`.
    pub context: Option<Vec<u8>>,
    /// `u.priority`: as registered.
    pub priority: u8,
    /// `u.range_subid`.
    pub range_subid: u8,
    /// `u.subtree`.
    pub subtree: Oid,
    /// `u.upper_bound`: on the wire only when `range_subid` is not 0.
    pub upper_bound: u32,
}

/// Get-PDU and GetNext-PDU (sections 6.2.5 and 6.2.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Get {
    /// `g.context`.
    pub context: Option<Vec<u8>>,
    /// `g.sr`.
    pub ranges: Vec<SearchRange>,
}

/// GetBulk-PDU (section 6.2.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetBulk {
    /// `g.context`.
    pub context: Option<Vec<u8>>,
    /// `g.non_repeaters`.
    pub non_repeaters: u16,
    /// `g.max_repetitions`.
    pub max_repetitions: u16,
    /// `g.sr`.
    pub ranges: Vec<SearchRange>,
}

/// A context and a VarBindList: TestSet-, Notify-, IndexAllocate- and
/// IndexDeallocate-PDU (sections 6.2.8, 6.2.10, 6.2.12, 6.2.13).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VarBindPdu {
    /// The optional non-default context.
    pub context: Option<Vec<u8>>,
    /// The VarBindList.
    pub varbinds: Vec<VarBind>,
}

/// Ping-PDU (section 6.2.11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ping {
    /// `p.context`.
    pub context: Option<Vec<u8>>,
}

/// AddAgentCaps-PDU (section 6.2.14).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddAgentCaps {
    /// `a.context`.
    pub context: Option<Vec<u8>>,
    /// `a.id`: the AGENT-CAPABILITIES value exported as sysORID.
    pub id: Oid,
    /// `a.descr`: exported as sysORDescr.
    pub description: Vec<u8>,
}

/// RemoveAgentCaps-PDU (section 6.2.15).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoveAgentCaps {
    /// `a.context`.
    pub context: Option<Vec<u8>>,
    /// `a.id`.
    pub id: Oid,
}

/// Response-PDU (section 6.2.16).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// `res.sysUpTime`: the master's uptime (0 from a subagent).
    pub sys_uptime: u32,
    /// `res.error`.
    pub error: ErrorStatus,
    /// `res.index`: 1-based index of the failed VarBind, or 0.
    pub index: u16,
    /// The VarBindList, if any.
    pub varbinds: Vec<VarBind>,
}

/// The type-specific part of a PDU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Open(Open),
    Close(Close),
    Register(Register),
    Unregister(Unregister),
    Get(Get),
    GetNext(Get),
    GetBulk(GetBulk),
    TestSet(VarBindPdu),
    CommitSet,
    UndoSet,
    CleanupSet,
    Notify(VarBindPdu),
    Ping(Ping),
    IndexAllocate(VarBindPdu),
    IndexDeallocate(VarBindPdu),
    AddAgentCaps(AddAgentCaps),
    RemoveAgentCaps(RemoveAgentCaps),
    Response(Response),
}

impl Payload {
    /// The PDU type of this payload.
    pub fn pdu_type(&self) -> PduType {
        match self {
            Payload::Open(_) => PduType::Open,
            Payload::Close(_) => PduType::Close,
            Payload::Register(_) => PduType::Register,
            Payload::Unregister(_) => PduType::Unregister,
            Payload::Get(_) => PduType::Get,
            Payload::GetNext(_) => PduType::GetNext,
            Payload::GetBulk(_) => PduType::GetBulk,
            Payload::TestSet(_) => PduType::TestSet,
            Payload::CommitSet => PduType::CommitSet,
            Payload::UndoSet => PduType::UndoSet,
            Payload::CleanupSet => PduType::CleanupSet,
            Payload::Notify(_) => PduType::Notify,
            Payload::Ping(_) => PduType::Ping,
            Payload::IndexAllocate(_) => PduType::IndexAllocate,
            Payload::IndexDeallocate(_) => PduType::IndexDeallocate,
            Payload::AddAgentCaps(_) => PduType::AddAgentCaps,
            Payload::RemoveAgentCaps(_) => PduType::RemoveAgentCaps,
            Payload::Response(_) => PduType::Response,
        }
    }

    /// The non-default context of this payload, if it has one.
    pub fn context(&self) -> Option<&[u8]> {
        let ctx = match self {
            Payload::Register(p) => &p.context,
            Payload::Unregister(p) => &p.context,
            Payload::Get(p) | Payload::GetNext(p) => &p.context,
            Payload::GetBulk(p) => &p.context,
            Payload::TestSet(p)
            | Payload::Notify(p)
            | Payload::IndexAllocate(p)
            | Payload::IndexDeallocate(p) => &p.context,
            Payload::Ping(p) => &p.context,
            Payload::AddAgentCaps(p) => &p.context,
            Payload::RemoveAgentCaps(p) => &p.context,
            Payload::Open(_)
            | Payload::Close(_)
            | Payload::CommitSet
            | Payload::UndoSet
            | Payload::CleanupSet
            | Payload::Response(_) => return None,
        };
        ctx.as_deref()
    }
}

/// One AgentX PDU: the header fields that are not derived from the payload,
/// and the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pdu {
    /// `h.sessionID`.
    pub session_id: u32,
    /// `h.transactionID`.
    pub transaction_id: u32,
    /// `h.packetID`.
    pub packet_id: u32,
    /// `h.flags` as received. When encoding, NETWORK_BYTE_ORDER is always
    /// set and NON_DEFAULT_CONTEXT follows the payload's context; the
    /// other bits are written as given.
    pub flags: Flags,
    /// The type-specific part.
    pub payload: Payload,
}

impl Pdu {
    /// A PDU with the given IDs and payload, no special flags.
    pub fn new(session_id: u32, transaction_id: u32, packet_id: u32, payload: Payload) -> Pdu {
        Pdu {
            session_id,
            transaction_id,
            packet_id,
            flags: Flags::NONE,
            payload,
        }
    }

    /// The type of this PDU.
    pub fn pdu_type(&self) -> PduType {
        self.payload.pdu_type()
    }

    /// Decodes the payload of a PDU whose header was decoded already.
    /// `payload` must be exactly `header.payload_length` bytes.
    pub fn decode(header: &Header, payload: &[u8]) -> Result<Pdu, DecodeError> {
        if payload.len() != header.payload_length as usize {
            return Err(DecodeError::LengthMismatch {
                declared: header.payload_length,
                actual: payload.len(),
            });
        }
        let pdu_type = PduType::from_u8(header.pdu_type)
            .ok_or(DecodeError::UnknownPduType(header.pdu_type))?;
        let mut r = Reader::new(payload, header.is_network_byte_order());
        let context = if pdu_type.has_context() && header.flags.contains(Flags::NON_DEFAULT_CONTEXT)
        {
            Some(r.octets("context")?)
        } else {
            None
        };
        let payload = match pdu_type {
            PduType::Open => {
                let timeout = r.u8("o.timeout")?;
                r.take(3, "o.timeout")?;
                let (id, _) = r.oid("o.id")?;
                let description = r.octets("o.descr")?;
                Payload::Open(Open {
                    timeout,
                    id,
                    description,
                })
            }
            PduType::Close => {
                let reason = CloseReason::from_u8(r.u8("c.reason")?);
                r.take(3, "c.reason")?;
                Payload::Close(Close { reason })
            }
            PduType::Register => {
                let timeout = r.u8("r.timeout")?;
                let priority = r.u8("r.priority")?;
                let range_subid = r.u8("r.range_subid")?;
                r.take(1, "r.range_subid")?;
                let (subtree, _) = r.oid("r.subtree")?;
                let upper_bound = if range_subid != 0 {
                    r.u32("r.upper_bound")?
                } else {
                    0
                };
                Payload::Register(Register {
                    context,
                    timeout,
                    priority,
                    range_subid,
                    subtree,
                    upper_bound,
                })
            }
            PduType::Unregister => {
                r.take(1, "u.priority")?;
                let priority = r.u8("u.priority")?;
                let range_subid = r.u8("u.range_subid")?;
                r.take(1, "u.range_subid")?;
                let (subtree, _) = r.oid("u.subtree")?;
                let upper_bound = if range_subid != 0 {
                    r.u32("u.upper_bound")?
                } else {
                    0
                };
                Payload::Unregister(Unregister {
                    context,
                    priority,
                    range_subid,
                    subtree,
                    upper_bound,
                })
            }
            PduType::Get => Payload::Get(Get {
                context,
                ranges: r.search_range_list()?,
            }),
            PduType::GetNext => Payload::GetNext(Get {
                context,
                ranges: r.search_range_list()?,
            }),
            PduType::GetBulk => {
                let non_repeaters = r.u16("g.non_repeaters")?;
                let max_repetitions = r.u16("g.max_repetitions")?;
                Payload::GetBulk(GetBulk {
                    context,
                    non_repeaters,
                    max_repetitions,
                    ranges: r.search_range_list()?,
                })
            }
            PduType::TestSet => Payload::TestSet(VarBindPdu {
                context,
                varbinds: r.varbind_list()?,
            }),
            PduType::CommitSet => Payload::CommitSet,
            PduType::UndoSet => Payload::UndoSet,
            PduType::CleanupSet => Payload::CleanupSet,
            PduType::Notify => Payload::Notify(VarBindPdu {
                context,
                varbinds: r.varbind_list()?,
            }),
            PduType::Ping => Payload::Ping(Ping { context }),
            PduType::IndexAllocate => Payload::IndexAllocate(VarBindPdu {
                context,
                varbinds: r.varbind_list()?,
            }),
            PduType::IndexDeallocate => Payload::IndexDeallocate(VarBindPdu {
                context,
                varbinds: r.varbind_list()?,
            }),
            PduType::AddAgentCaps => {
                let (id, _) = r.oid("a.id")?;
                let description = r.octets("a.descr")?;
                Payload::AddAgentCaps(AddAgentCaps {
                    context,
                    id,
                    description,
                })
            }
            PduType::RemoveAgentCaps => {
                let (id, _) = r.oid("a.id")?;
                Payload::RemoveAgentCaps(RemoveAgentCaps { context, id })
            }
            PduType::Response => {
                let sys_uptime = r.u32("res.sysUpTime")?;
                let error = ErrorStatus(r.u16("res.error")?);
                let index = r.u16("res.index")?;
                Payload::Response(Response {
                    sys_uptime,
                    error,
                    index,
                    varbinds: r.varbind_list()?,
                })
            }
        };
        if !r.is_empty() {
            return Err(DecodeError::TrailingBytes(r.remaining()));
        }
        Ok(Pdu {
            session_id: header.session_id,
            transaction_id: header.transaction_id,
            packet_id: header.packet_id,
            flags: header.flags,
            payload,
        })
    }

    /// Decodes one whole PDU (header and payload, nothing more).
    pub fn decode_frame(bytes: &[u8]) -> Result<Pdu, DecodeError> {
        let head: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(DecodeError::Truncated {
                what: "header",
                needed: HEADER_LEN,
                available: bytes.len(),
            })?;
        let header = Header::decode(head)?;
        let rest = &bytes[HEADER_LEN..];
        let len = header.payload_length as usize;
        if rest.len() < len {
            return Err(DecodeError::Truncated {
                what: "payload",
                needed: len,
                available: rest.len(),
            });
        }
        if rest.len() > len {
            return Err(DecodeError::TrailingBytes(rest.len() - len));
        }
        Pdu::decode(&header, rest)
    }

    /// Encodes this PDU (header and payload) in network byte order.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(64);
        let context = self.payload.context();
        let mut flags = self.flags.with(Flags::NETWORK_BYTE_ORDER);
        flags = if context.is_some() {
            flags.with(Flags::NON_DEFAULT_CONTEXT)
        } else {
            flags.without(Flags::NON_DEFAULT_CONTEXT)
        };
        out.push(VERSION);
        out.push(self.pdu_type() as u8);
        out.push(flags.0);
        out.push(0);
        out.extend_from_slice(&self.session_id.to_be_bytes());
        out.extend_from_slice(&self.transaction_id.to_be_bytes());
        out.extend_from_slice(&self.packet_id.to_be_bytes());
        out.extend_from_slice(&[0u8; 4]); // payload length, patched below
        let mut w = Writer { out: &mut out };
        if let Some(ctx) = context {
            w.octets(ctx)?;
        }
        match &self.payload {
            Payload::Open(p) => {
                w.u8(p.timeout);
                w.out.extend_from_slice(&[0u8; 3]);
                w.oid(&p.id, false)?;
                w.octets(&p.description)?;
            }
            Payload::Close(p) => {
                w.u8(p.reason.to_u8());
                w.out.extend_from_slice(&[0u8; 3]);
            }
            Payload::Register(p) => {
                w.u8(p.timeout);
                w.u8(p.priority);
                w.u8(p.range_subid);
                w.u8(0);
                w.oid(&p.subtree, false)?;
                if p.range_subid != 0 {
                    w.u32(p.upper_bound);
                }
            }
            Payload::Unregister(p) => {
                w.u8(0);
                w.u8(p.priority);
                w.u8(p.range_subid);
                w.u8(0);
                w.oid(&p.subtree, false)?;
                if p.range_subid != 0 {
                    w.u32(p.upper_bound);
                }
            }
            Payload::Get(p) | Payload::GetNext(p) => {
                for sr in &p.ranges {
                    w.search_range(sr)?;
                }
            }
            Payload::GetBulk(p) => {
                w.u16(p.non_repeaters);
                w.u16(p.max_repetitions);
                for sr in &p.ranges {
                    w.search_range(sr)?;
                }
            }
            Payload::TestSet(p)
            | Payload::Notify(p)
            | Payload::IndexAllocate(p)
            | Payload::IndexDeallocate(p) => {
                for vb in &p.varbinds {
                    w.varbind(vb)?;
                }
            }
            Payload::CommitSet | Payload::UndoSet | Payload::CleanupSet | Payload::Ping(_) => {}
            Payload::AddAgentCaps(p) => {
                w.oid(&p.id, false)?;
                w.octets(&p.description)?;
            }
            Payload::RemoveAgentCaps(p) => {
                w.oid(&p.id, false)?;
            }
            Payload::Response(p) => {
                w.u32(p.sys_uptime);
                w.u16(p.error.0);
                w.u16(p.index);
                for vb in &p.varbinds {
                    w.varbind(vb)?;
                }
            }
        }
        let payload_len = out.len() - HEADER_LEN;
        if payload_len > MAX_PAYLOAD as usize {
            return Err(EncodeError::PayloadTooLarge(payload_len));
        }
        out[16..20].copy_from_slice(&(payload_len as u32).to_be_bytes());
        Ok(out)
    }
}
