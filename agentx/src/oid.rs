//! Object identifiers: the `Oid` type, its text form ("1.3.6.1.4.1.32473.25",
//! leading dot optional) and its SNMP order (lexicographic by
//! sub-identifier, a prefix before its extensions). This module knows
//! nothing about the wire: `pdu.rs` encodes OIDs with RFC 2741's prefix
//! compression.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

/// The most sub-identifiers an OID may have (RFC 2741 section 5.1 and
/// RFC 2578 section 3.5 both say 128).
pub const MAX_SUBIDS: usize = 128;

/// An SNMP object identifier.
///
/// Ordering is SNMP's: sub-identifier by sub-identifier as unsigned
/// numbers, and a prefix sorts before everything that extends it
/// (`1.3.6.1.2 < 1.3.6.1.2.1 < 1.3.6.1.3`). The empty OID is the "null"
/// OID of RFC 2741 (used as an unbounded end of a search range).
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Oid(Vec<u32>);

/// Why a text OID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidParseError {
    /// The text was empty (or just a dot).
    #[error("empty object identifier")]
    Empty,
    /// A sub-identifier was not a decimal number in 0..=4294967295.
    #[error("bad sub-identifier {0:?} (a decimal number up to 4294967295 expected)")]
    BadSubid(String),
    /// More than [`MAX_SUBIDS`] sub-identifiers.
    #[error("object identifier has {0} sub-identifiers, at most 128 are allowed")]
    TooLong(usize),
}

impl Oid {
    /// The null (empty) OID.
    pub const fn null() -> Oid {
        Oid(Vec::new())
    }

    /// An OID from its sub-identifiers. No length check: an OID longer than
    /// [`MAX_SUBIDS`] is refused when it is encoded.
    pub fn new(subids: impl Into<Vec<u32>>) -> Oid {
        Oid(subids.into())
    }

    /// An OID copied from a slice of sub-identifiers.
    pub fn from_slice(subids: &[u32]) -> Oid {
        Oid(subids.to_vec())
    }

    /// The sub-identifiers.
    pub fn as_slice(&self) -> &[u32] {
        &self.0
    }

    /// The number of sub-identifiers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether this is the null OID.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `prefix` is a prefix of this OID (an OID is a prefix of
    /// itself; the null OID is a prefix of every OID).
    pub fn starts_with(&self, prefix: &Oid) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// This OID with `subid` appended.
    pub fn child(&self, subid: u32) -> Oid {
        let mut v = Vec::with_capacity(self.0.len() + 1);
        v.extend_from_slice(&self.0);
        v.push(subid);
        Oid(v)
    }

    /// This OID with all of `subids` appended.
    pub fn join(&self, subids: &[u32]) -> Oid {
        let mut v = Vec::with_capacity(self.0.len() + subids.len());
        v.extend_from_slice(&self.0);
        v.extend_from_slice(subids);
        Oid(v)
    }

    /// Appends one sub-identifier in place.
    pub fn push(&mut self, subid: u32) {
        self.0.push(subid);
    }

    /// The sub-identifiers, by value.
    pub fn into_vec(self) -> Vec<u32> {
        self.0
    }
}

impl From<Vec<u32>> for Oid {
    fn from(v: Vec<u32>) -> Oid {
        Oid(v)
    }
}

impl From<&[u32]> for Oid {
    fn from(v: &[u32]) -> Oid {
        Oid(v.to_vec())
    }
}

impl<const N: usize> From<[u32; N]> for Oid {
    fn from(v: [u32; N]) -> Oid {
        Oid(v.to_vec())
    }
}

impl AsRef<[u32]> for Oid {
    fn as_ref(&self) -> &[u32] {
        &self.0
    }
}

/// Lets ordered maps keyed by `Oid` be searched with a `&[u32]`: the order
/// of `Oid` is exactly the order of its slice.
impl Borrow<[u32]> for Oid {
    fn borrow(&self) -> &[u32] {
        &self.0
    }
}

impl FromStr for Oid {
    type Err = OidParseError;

    fn from_str(s: &str) -> Result<Oid, OidParseError> {
        let s = s.trim();
        let s = s.strip_prefix('.').unwrap_or(s);
        if s.is_empty() {
            return Err(OidParseError::Empty);
        }
        let mut subids = Vec::new();
        for part in s.split('.') {
            if subids.len() == MAX_SUBIDS {
                return Err(OidParseError::TooLong(s.split('.').count()));
            }
            // u32::from_str accepts a leading '+'; an OID does not.
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(OidParseError::BadSubid(part.to_string()));
            }
            let n = part
                .parse::<u32>()
                .map_err(|_| OidParseError::BadSubid(part.to_string()))?;
            subids.push(n);
        }
        Ok(Oid(subids))
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({self})")
    }
}

/// Well-known OIDs the subagent uses itself.
pub mod well_known {
    /// `sysUpTime.0` (SNMPv2-MIB), the first varbind of a notification.
    pub const SYS_UPTIME_0: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];
    /// `snmpTrapOID.0` (SNMPv2-MIB), the second varbind of a notification.
    pub const SNMP_TRAP_OID_0: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(s: &str) -> Oid {
        s.parse().unwrap()
    }

    #[test]
    fn parses_with_and_without_leading_dot() {
        assert_eq!(
            oid("1.3.6.1.4.1.32473.25").as_slice(),
            &[1, 3, 6, 1, 4, 1, 32473, 25]
        );
        assert_eq!(oid(".1.3.6"), oid("1.3.6"));
        assert_eq!(oid("0"), Oid::new(vec![0]));
        assert_eq!(oid("4294967295").as_slice(), &[u32::MAX]);
    }

    #[test]
    fn refuses_bad_text() {
        assert_eq!("".parse::<Oid>(), Err(OidParseError::Empty));
        assert_eq!(".".parse::<Oid>(), Err(OidParseError::Empty));
        assert!(matches!(
            "1..3".parse::<Oid>(),
            Err(OidParseError::BadSubid(_))
        ));
        assert!(matches!(
            "1.3.".parse::<Oid>(),
            Err(OidParseError::BadSubid(_))
        ));
        assert!(matches!(
            "1.+3".parse::<Oid>(),
            Err(OidParseError::BadSubid(_))
        ));
        assert!(matches!(
            "1.-3".parse::<Oid>(),
            Err(OidParseError::BadSubid(_))
        ));
        assert!(matches!(
            "1.a".parse::<Oid>(),
            Err(OidParseError::BadSubid(_))
        ));
        assert!(matches!(
            "4294967296".parse::<Oid>(),
            Err(OidParseError::BadSubid(_))
        ));
        let long = vec!["1"; 129].join(".");
        assert_eq!(long.parse::<Oid>(), Err(OidParseError::TooLong(129)));
        let max = vec!["1"; 128].join(".");
        assert_eq!(max.parse::<Oid>().unwrap().len(), 128);
    }

    #[test]
    fn displays_round_trip() {
        let o = oid("1.3.6.1.4.1.32473.25.1.2.1.6.150");
        assert_eq!(o.to_string(), "1.3.6.1.4.1.32473.25.1.2.1.6.150");
        assert_eq!(o.to_string().parse::<Oid>().unwrap(), o);
        assert_eq!(Oid::null().to_string(), "");
    }

    #[test]
    fn orders_like_snmp() {
        let mut v = [
            oid("1.3.6.1.3"),
            oid("1.3.6.1.2.1"),
            oid("1.3.6.1.10"),
            oid("1.3.6.1.2"),
            oid("1.3.6.1.9"),
        ];
        v.sort();
        let s: Vec<String> = v.iter().map(|o| o.to_string()).collect();
        assert_eq!(
            s,
            [
                "1.3.6.1.2",
                "1.3.6.1.2.1",
                "1.3.6.1.3",
                "1.3.6.1.9",
                "1.3.6.1.10"
            ]
        );
        assert!(Oid::null() < oid("0"));
    }

    #[test]
    fn prefixes() {
        let root = oid("1.3.6.1.4.1.32473.25");
        assert!(oid("1.3.6.1.4.1.32473.25.1.1.0").starts_with(&root));
        assert!(root.starts_with(&root));
        assert!(!oid("1.3.6.1.4.1.32473.250").starts_with(&root));
        assert!(!oid("1.3.6.1.4.1.32473").starts_with(&root));
        assert!(root.starts_with(&Oid::null()));
        assert_eq!(
            root.child(1).join(&[2, 3]),
            oid("1.3.6.1.4.1.32473.25.1.2.3")
        );
    }
}
