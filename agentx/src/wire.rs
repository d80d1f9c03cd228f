//! The primitive encodings of RFC 2741 section 5: integers in either byte
//! order, Object Identifiers with prefix compression, Octet Strings with
//! padding, VarBinds and SearchRanges. `Reader` is total: every read
//! checks what is left and returns a typed error, never panics, and never
//! allocates more than the bytes it was given. `Writer` always writes
//! network byte order. PDU layouts are in `pdu.rs`.

use crate::oid::{Oid, MAX_SUBIDS};
use crate::pdu::{DecodeError, EncodeError, SearchRange, MAX_PAYLOAD};
use crate::value::{Value, VarBind};

/// The `1.3.6.1` that a non-zero OID prefix stands for (plus the prefix).
const INTERNET: [u32; 4] = [1, 3, 6, 1];

/// Reads the payload of one PDU.
pub(crate) struct Reader<'a> {
    /// What is left to read.
    buf: &'a [u8],
    /// The PDU's NETWORK_BYTE_ORDER flag.
    big_endian: bool,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], big_endian: bool) -> Reader<'a> {
        Reader { buf, big_endian }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated {
                what,
                needed: n,
                available: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.array::<2>(what)?;
        Ok(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.array::<4>(what)?;
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.array::<8>(what)?;
        Ok(if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }

    /// An Object Identifier (section 5.1) and its `include` field.
    pub(crate) fn oid(&mut self, what: &'static str) -> Result<(Oid, bool), DecodeError> {
        let head = self.array::<4>(what)?;
        let (n_subid, prefix, include) = (head[0], head[1], head[2]);
        if usize::from(n_subid) > MAX_SUBIDS {
            return Err(DecodeError::OidTooLong(n_subid));
        }
        // Checked before allocating: never more than the bytes at hand.
        let body = self.take(usize::from(n_subid) * 4, what)?;
        let mut subids = Vec::with_capacity(usize::from(n_subid) + if prefix != 0 { 5 } else { 0 });
        if prefix != 0 {
            subids.extend_from_slice(&INTERNET);
            subids.push(u32::from(prefix));
        }
        for chunk in body.chunks_exact(4) {
            let b = [chunk[0], chunk[1], chunk[2], chunk[3]];
            subids.push(if self.big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            });
        }
        Ok((Oid::new(subids), include != 0))
    }

    /// An Octet String (section 5.3), padding skipped.
    pub(crate) fn octets(&mut self, what: &'static str) -> Result<Vec<u8>, DecodeError> {
        let len = self.u32(what)?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated {
            what,
            needed: usize::MAX,
            available: self.buf.len(),
        })?;
        let padded = len
            .checked_add(3)
            .map(|n| n & !3)
            .ok_or(DecodeError::Truncated {
                what,
                needed: usize::MAX,
                available: self.buf.len(),
            })?;
        let bytes = self.take(padded, what)?;
        Ok(bytes[..len].to_vec())
    }

    /// A VarBind (section 5.4).
    pub(crate) fn varbind(&mut self) -> Result<VarBind, DecodeError> {
        let vtype = self.u16("v.type")?;
        let _reserved = self.u16("v.type")?;
        let (name, _include) = self.oid("v.name")?;
        let value = match vtype {
            2 => Value::Integer(self.u32("Integer")? as i32),
            4 => Value::OctetString(self.octets("OctetString")?),
            5 => Value::Null,
            6 => Value::ObjectIdentifier(self.oid("ObjectIdentifier")?.0),
            64 => {
                let raw = self.octets("IpAddress")?;
                let octets: [u8; 4] = raw
                    .as_slice()
                    .try_into()
                    .map_err(|_| DecodeError::BadIpAddress(raw.len()))?;
                Value::IpAddress(octets)
            }
            65 => Value::Counter32(self.u32("Counter32")?),
            66 => Value::Gauge32(self.u32("Gauge32")?),
            67 => Value::TimeTicks(self.u32("TimeTicks")?),
            68 => Value::Opaque(self.octets("Opaque")?),
            70 => Value::Counter64(self.u64("Counter64")?),
            128 => Value::NoSuchObject,
            129 => Value::NoSuchInstance,
            130 => Value::EndOfMibView,
            other => return Err(DecodeError::UnknownValueType(other)),
        };
        Ok(VarBind { name, value })
    }

    /// VarBinds up to the end of the payload.
    pub(crate) fn varbind_list(&mut self) -> Result<Vec<VarBind>, DecodeError> {
        let mut list = Vec::new();
        while !self.is_empty() {
            list.push(self.varbind()?);
        }
        Ok(list)
    }

    /// A SearchRange (section 5.2).
    pub(crate) fn search_range(&mut self) -> Result<SearchRange, DecodeError> {
        let (start, include) = self.oid("SearchRange start")?;
        let (end, _) = self.oid("SearchRange end")?;
        Ok(SearchRange {
            start,
            include,
            end,
        })
    }

    /// SearchRanges up to the end of the payload.
    pub(crate) fn search_range_list(&mut self) -> Result<Vec<SearchRange>, DecodeError> {
        let mut list = Vec::new();
        while !self.is_empty() {
            list.push(self.search_range()?);
        }
        Ok(list)
    }
}

/// Writes the payload of one PDU, in network byte order.
pub(crate) struct Writer<'a> {
    pub(crate) out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// An Object Identifier, compressed with the `1.3.6.1.x` prefix when
    /// it can be.
    pub(crate) fn oid(&mut self, oid: &Oid, include: bool) -> Result<(), EncodeError> {
        let (prefix, rest) = split_prefix(oid.as_slice());
        if rest.len() > MAX_SUBIDS {
            return Err(EncodeError::OidTooLong(oid.len()));
        }
        // rest.len() <= 128, so it fits a byte.
        self.u8(rest.len() as u8);
        self.u8(prefix);
        self.u8(u8::from(include));
        self.u8(0);
        for &n in rest {
            self.u32(n);
        }
        Ok(())
    }

    /// An Octet String with its zero padding.
    pub(crate) fn octets(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        if bytes.len() > MAX_PAYLOAD as usize {
            return Err(EncodeError::PayloadTooLarge(bytes.len()));
        }
        self.u32(bytes.len() as u32);
        self.out.extend_from_slice(bytes);
        let pad = (4 - bytes.len() % 4) % 4;
        self.out.extend_from_slice(&[0u8; 3][..pad]);
        Ok(())
    }

    pub(crate) fn varbind(&mut self, vb: &VarBind) -> Result<(), EncodeError> {
        self.u16(vb.value.type_code());
        self.u16(0);
        self.oid(&vb.name, false)?;
        match &vb.value {
            Value::Integer(v) => self.u32(*v as u32),
            Value::OctetString(b) | Value::Opaque(b) => self.octets(b)?,
            Value::ObjectIdentifier(o) => self.oid(o, false)?,
            Value::IpAddress(a) => self.octets(a)?,
            Value::Counter32(v) | Value::Gauge32(v) | Value::TimeTicks(v) => self.u32(*v),
            Value::Counter64(v) => self.u64(*v),
            Value::Null | Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView => {}
        }
        Ok(())
    }

    pub(crate) fn search_range(&mut self, sr: &SearchRange) -> Result<(), EncodeError> {
        self.oid(&sr.start, sr.include)?;
        self.oid(&sr.end, false)
    }
}

/// Splits `1.3.6.1.x.rest` (0 < x < 256) into `(x, rest)`; anything else
/// into `(0, all)`.
fn split_prefix(subids: &[u32]) -> (u8, &[u32]) {
    if subids.len() >= 5 && subids[..4] == INTERNET {
        if let Ok(x) = u8::try_from(subids[4]) {
            if x != 0 {
                return (x, &subids[5..]);
            }
        }
    }
    (0, subids)
}

/// The encoded size of an OID.
pub(crate) fn oid_len(oid: &Oid) -> usize {
    4 + 4 * split_prefix(oid.as_slice()).1.len()
}

/// The encoded size of a VarBind (for keeping responses under the limit).
pub(crate) fn varbind_len(vb: &VarBind) -> usize {
    let data = match &vb.value {
        Value::Integer(_) | Value::Counter32(_) | Value::Gauge32(_) | Value::TimeTicks(_) => 4,
        Value::Counter64(_) => 8,
        Value::OctetString(b) | Value::Opaque(b) => 4 + b.len().div_ceil(4) * 4,
        Value::IpAddress(_) => 8,
        Value::ObjectIdentifier(o) => oid_len(o),
        Value::Null | Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView => 0,
    };
    4 + oid_len(&vb.name) + data
}
