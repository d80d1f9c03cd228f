//! SNMP values and variable bindings as the subagent serves and sends them:
//! the value types of RFC 2741 section 5.4 and the three exceptions
//! (noSuchObject, noSuchInstance, endOfMibView). The wire form lives in
//! `pdu.rs`.

use std::fmt;
use std::net::Ipv4Addr;

use crate::oid::Oid;

/// A value of a variable binding (RFC 2741 section 5.4).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// INTEGER / Integer32 (type 2).
    Integer(i32),
    /// OCTET STRING (type 4): any bytes, not necessarily text.
    OctetString(Vec<u8>),
    /// NULL (type 5).
    Null,
    /// OBJECT IDENTIFIER (type 6).
    ObjectIdentifier(Oid),
    /// IpAddress (type 64), most significant octet first.
    IpAddress([u8; 4]),
    /// Counter32 (type 65).
    Counter32(u32),
    /// Gauge32 / Unsigned32 (type 66).
    Gauge32(u32),
    /// TimeTicks (type 67), hundredths of a second.
    TimeTicks(u32),
    /// Opaque (type 68): BER-wrapped bytes, passed through as they are.
    Opaque(Vec<u8>),
    /// Counter64 (type 70).
    Counter64(u64),
    /// Exception: no such object at this OID (type 128).
    NoSuchObject,
    /// Exception: the object exists but not this instance (type 129).
    NoSuchInstance,
    /// Exception: nothing further in the view (type 130).
    EndOfMibView,
}

impl Value {
    /// The RFC 2741 `v.type` code of this value.
    pub fn type_code(&self) -> u16 {
        match self {
            Value::Integer(_) => 2,
            Value::OctetString(_) => 4,
            Value::Null => 5,
            Value::ObjectIdentifier(_) => 6,
            Value::IpAddress(_) => 64,
            Value::Counter32(_) => 65,
            Value::Gauge32(_) => 66,
            Value::TimeTicks(_) => 67,
            Value::Opaque(_) => 68,
            Value::Counter64(_) => 70,
            Value::NoSuchObject => 128,
            Value::NoSuchInstance => 129,
            Value::EndOfMibView => 130,
        }
    }

    /// Whether this is one of the three exceptions (noSuchObject,
    /// noSuchInstance, endOfMibView) rather than a value.
    pub fn is_exception(&self) -> bool {
        matches!(
            self,
            Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView
        )
    }

    /// An OctetString from text.
    pub fn string(s: impl Into<String>) -> Value {
        Value::OctetString(s.into().into_bytes())
    }

    /// An IpAddress from an `Ipv4Addr`.
    pub fn ip(addr: Ipv4Addr) -> Value {
        Value::IpAddress(addr.octets())
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Integer(v) => write!(f, "Integer({v})"),
            Value::OctetString(v) => match std::str::from_utf8(v) {
                Ok(s) => write!(f, "OctetString({s:?})"),
                Err(_) => write!(f, "OctetString({v:02x?})"),
            },
            Value::Null => f.write_str("Null"),
            Value::ObjectIdentifier(o) => write!(f, "ObjectIdentifier({o})"),
            Value::IpAddress(a) => write!(f, "IpAddress({})", Ipv4Addr::from(*a)),
            Value::Counter32(v) => write!(f, "Counter32({v})"),
            Value::Gauge32(v) => write!(f, "Gauge32({v})"),
            Value::TimeTicks(v) => write!(f, "TimeTicks({v})"),
            Value::Opaque(v) => write!(f, "Opaque({v:02x?})"),
            Value::Counter64(v) => write!(f, "Counter64({v})"),
            Value::NoSuchObject => f.write_str("NoSuchObject"),
            Value::NoSuchInstance => f.write_str("NoSuchInstance"),
            Value::EndOfMibView => f.write_str("EndOfMibView"),
        }
    }
}

/// A variable binding: a name and its value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VarBind {
    /// The variable's name (an object instance OID).
    pub name: Oid,
    /// Its value, or an exception.
    pub value: Value,
}

impl VarBind {
    /// A variable binding.
    pub fn new(name: Oid, value: Value) -> VarBind {
        VarBind { name, value }
    }
}
