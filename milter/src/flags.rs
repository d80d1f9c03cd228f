//! The two bit sets of option negotiation: [`Actions`] (SMFIF_*, the
//! message modifications a filter may ask for at end of message) and
//! [`Protocol`] (SMFIP_*, the steps the MTA leaves out and the replies the
//! filter leaves out). Values are libmilter's (`mfdef.h`). This module
//! only names bits; what to ask for is decided in `negotiate.rs`.

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign};

/// Declares a `u32` newtype with named bits, set operations and a
/// `Debug`/`Display` that names the bits (for logs: "quarantine not
/// offered" reads better than a hex number).
macro_rules! flags {
    (
        $(#[$doc:meta])*
        $name:ident {
            $( $(#[$fdoc:meta])* $flag:ident = $value:expr, )*
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name(pub u32);

        impl $name {
            /// No bit.
            pub const NONE: $name = $name(0);
            $( $(#[$fdoc])* pub const $flag: $name = $name($value); )*

            /// Every bit this module names, with its name.
            const NAMED: &'static [(&'static str, u32)] = &[$( (stringify!($flag), $value), )*];

            /// The raw bits, as on the wire.
            pub fn bits(self) -> u32 {
                self.0
            }

            /// Whether every bit of `other` is set here.
            pub fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }

            /// Whether no bit is set.
            pub fn is_empty(self) -> bool {
                self.0 == 0
            }

            /// These bits less those of `other`.
            pub fn without(self, other: $name) -> $name {
                $name(self.0 & !other.0)
            }
        }

        impl BitOr for $name {
            type Output = $name;
            fn bitor(self, rhs: $name) -> $name {
                $name(self.0 | rhs.0)
            }
        }

        impl BitOrAssign for $name {
            fn bitor_assign(&mut self, rhs: $name) {
                self.0 |= rhs.0;
            }
        }

        impl BitAnd for $name {
            type Output = $name;
            fn bitand(self, rhs: $name) -> $name {
                $name(self.0 & rhs.0)
            }
        }

        impl fmt::Display for $name {
            /// `ADDHDRS|QUARANTINE`, unnamed bits in hex, `none` for 0.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_names(f, self.0, Self::NAMED)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(", stringify!($name))?;
                write_names(f, self.0, Self::NAMED)?;
                write!(f, ")")
            }
        }
    };
}

fn write_names(f: &mut fmt::Formatter<'_>, bits: u32, named: &[(&str, u32)]) -> fmt::Result {
    if bits == 0 {
        return write!(f, "none");
    }
    let mut rest = bits;
    let mut first = true;
    for &(name, value) in named {
        if bits & value == value {
            if !first {
                write!(f, "|")?;
            }
            write!(f, "{name}")?;
            first = false;
            rest &= !value;
        }
    }
    if rest != 0 {
        if !first {
            write!(f, "|")?;
        }
        write!(f, "{rest:#x}")?;
    }
    Ok(())
}

flags! {
    /// SMFIF_*: the modifications a filter may request at end of message.
    /// The MTA offers some in its option negotiation; the filter's reply
    /// names those it will use, and it must not send any other.
    Actions {
        /// SMFIR_ADDHEADER (and SMFIR_INSHEADER).
        ADDHDRS = 0x01,
        /// SMFIR_REPLBODY.
        CHGBODY = 0x02,
        /// SMFIR_ADDRCPT.
        ADDRCPT = 0x04,
        /// SMFIR_DELRCPT.
        DELRCPT = 0x08,
        /// SMFIR_CHGHEADER.
        CHGHDRS = 0x10,
        /// SMFIR_QUARANTINE.
        QUARANTINE = 0x20,
        /// SMFIR_CHGFROM.
        CHGFROM = 0x40,
        /// SMFIR_ADDRCPT_PAR.
        ADDRCPT_PAR = 0x80,
        /// SMFIR_SETSYMLIST in the negotiation reply (not sent by this crate).
        SETSYMLIST = 0x100,
    }
}

flags! {
    /// SMFIP_*: protocol steps. The `NO*` bits ask the MTA not to send a
    /// step, the `NR_*` bits promise that the filter will not reply to a
    /// step, and SKIP, RCPT_REJ and HDR_LEADSPC change what is sent. A bit
    /// may be set in the filter's reply only if the MTA offered it.
    Protocol {
        /// No SMFIC_CONNECT.
        NOCONNECT = 0x1,
        /// No SMFIC_HELO.
        NOHELO = 0x2,
        /// No SMFIC_MAIL.
        NOMAIL = 0x4,
        /// No SMFIC_RCPT.
        NORCPT = 0x8,
        /// No SMFIC_BODY.
        NOBODY = 0x10,
        /// No SMFIC_HEADER.
        NOHDRS = 0x20,
        /// No SMFIC_EOH.
        NOEOH = 0x40,
        /// No reply to SMFIC_HEADER.
        NR_HDR = 0x80,
        /// No SMFIC_UNKNOWN.
        NOUNKNOWN = 0x100,
        /// No SMFIC_DATA.
        NODATA = 0x200,
        /// The MTA understands SMFIR_SKIP.
        SKIP = 0x400,
        /// The MTA also sends recipients it rejected.
        RCPT_REJ = 0x800,
        /// No reply to SMFIC_CONNECT.
        NR_CONN = 0x1000,
        /// No reply to SMFIC_HELO.
        NR_HELO = 0x2000,
        /// No reply to SMFIC_MAIL.
        NR_MAIL = 0x4000,
        /// No reply to SMFIC_RCPT.
        NR_RCPT = 0x8000,
        /// No reply to SMFIC_DATA.
        NR_DATA = 0x10000,
        /// No reply to SMFIC_UNKNOWN.
        NR_UNKN = 0x20000,
        /// No reply to SMFIC_EOH.
        NR_EOH = 0x40000,
        /// No reply to SMFIC_BODY.
        NR_BODY = 0x80000,
        /// Header values are sent with their leading space (by default the
        /// MTA drops one space after the colon).
        HDR_LEADSPC = 0x100000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let a = Actions::ADDHDRS | Actions::QUARANTINE;
        assert!(a.contains(Actions::ADDHDRS));
        assert!(!a.contains(Actions::ADDHDRS | Actions::CHGBODY));
        assert_eq!(a & Actions::QUARANTINE, Actions::QUARANTINE);
        assert_eq!(a.without(Actions::ADDHDRS), Actions::QUARANTINE);
        assert!(Actions::NONE.is_empty());
        let mut p = Protocol::NOUNKNOWN;
        p |= Protocol::NODATA;
        assert_eq!(p.bits(), 0x300);
    }

    #[test]
    fn names_in_logs() {
        assert_eq!(
            (Actions::ADDHDRS | Actions::QUARANTINE).to_string(),
            "ADDHDRS|QUARANTINE"
        );
        assert_eq!(format!("{:?}", Protocol::NONE), "Protocol(none)");
        assert_eq!(
            format!("{:?}", Protocol(0x8000_0080)),
            "Protocol(NR_HDR|0x80000000)"
        );
    }
}
