//! Durations and sizes as operators write them in the configuration:
//! `"30s"`, `"5m"`, `"1h30m"`, `"250ms"`, `"5d"` and `"20MiB"`, `"512KiB"`,
//! `"1GB"`, `"1000"`. This file only parses and prints them; which keys use
//! them, and their limits, belong to the loader.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What a duration looks like, for error messages.
pub const DURATION_EXAMPLE: &str = "a duration like \"30s\" or \"5m\"";

/// The longest duration a setting may have: a hundred years. A deadline is
/// an instant plus a duration, and an instant plus `u64::MAX` seconds
/// overflows (a panic in every session that computes its deadline), so a
/// value past any use (the longest, archive retention, is years) is
/// refused where it is read, with its file, line and key.
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);
/// What a size looks like, for error messages.
pub const SIZE_EXAMPLE: &str = "a size like \"20MiB\"";

/// A duration from the configuration: one or more `NUMBER UNIT` pairs with
/// units `ms`, `s`, `m`, `h`, `d`, `w` (`"30s"`, `"5m"`, `"1h30m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// The duration itself.
    pub fn get(self) -> Duration {
        self.0
    }

    /// A duration of `secs` seconds (for defaults and tests).
    pub const fn secs(secs: u64) -> Dur {
        Dur(Duration::from_secs(secs))
    }
}

impl From<Dur> for Duration {
    fn from(d: Dur) -> Duration {
        d.0
    }
}

/// Why a duration or size could not be read; its text is the whole message,
/// e.g. `expected a duration like "30s" or "5m", got "5 minutes"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, got {got:?}{detail}")]
pub struct UnitError {
    expected: &'static str,
    got: String,
    detail: &'static str,
}

impl UnitError {
    fn new(expected: &'static str, got: &str, detail: &'static str) -> UnitError {
        UnitError {
            expected,
            got: got.to_string(),
            detail,
        }
    }
}

impl FromStr for Dur {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Dur, UnitError> {
        let bad = |detail| UnitError::new(DURATION_EXAMPLE, s, detail);
        let text = s.trim();
        if text.is_empty() {
            return Err(bad(""));
        }
        let mut total = Duration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad(""));
            }
            let number: u64 = rest[..digits]
                .parse()
                .map_err(|_| bad(" (number too large)"))?;
            rest = rest[digits..].trim_start();
            if rest.starts_with('.') {
                return Err(bad(" (whole numbers only: \"90m\", not \"1.5h\")"));
            }
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            rest = rest[unit_len..].trim_start();
            let part = match unit {
                "ms" => Some(Duration::from_millis(number)),
                "s" => Some(Duration::from_secs(number)),
                "m" => number.checked_mul(60).map(Duration::from_secs),
                "h" => number.checked_mul(3600).map(Duration::from_secs),
                "d" => number.checked_mul(86_400).map(Duration::from_secs),
                "w" => number.checked_mul(604_800).map(Duration::from_secs),
                "" => return Err(bad(" (a unit is needed: ms, s, m, h, d or w)")),
                _ => return Err(bad(" (units are ms, s, m, h, d and w)")),
            };
            total = part
                .and_then(|p| total.checked_add(p))
                .filter(|t| *t <= MAX_DURATION)
                .ok_or_else(|| bad(" (too large: at most 36500d)"))?;
        }
        Ok(Dur(total))
    }
}

impl fmt::Display for Dur {
    /// Prints the shortest form that reads back to the same value: `"1h30m"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let mut secs = d.as_secs();
        let millis = d.subsec_millis();
        if secs == 0 && millis == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{}", secs / size, unit)?;
                secs %= size;
            }
        }
        if millis > 0 {
            write!(f, "{millis}ms")?;
        }
        Ok(())
    }
}

/// A size in bytes from the configuration: a number with an optional unit,
/// binary (`KiB`, `MiB`, `GiB`, `TiB`) or decimal (`kB`, `MB`, `GB`, `TB`);
/// no unit or `B` means bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    pub fn get(self) -> u64 {
        self.0
    }

    /// `n` mebibytes (for defaults and tests).
    pub const fn mib(n: u64) -> ByteSize {
        ByteSize(n * 1024 * 1024)
    }

    /// `n` gibibytes.
    pub const fn gib(n: u64) -> ByteSize {
        ByteSize(n * 1024 * 1024 * 1024)
    }
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<ByteSize, UnitError> {
        let bad = |detail| UnitError::new(SIZE_EXAMPLE, s, detail);
        let text = s.trim();
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad(""));
        }
        let number: u64 = text[..digits]
            .parse()
            .map_err(|_| bad(" (number too large)"))?;
        let unit = text[digits..].trim_start();
        if unit.starts_with('.') {
            return Err(bad(" (whole numbers only: \"1536KiB\", not \"1.5MiB\")"));
        }
        let factor: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => return Err(bad(" (units are B, KiB, MiB, GiB, TiB, kB, MB, GB and TB)")),
        };
        number
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| bad(" (too large)"))
    }
}

impl fmt::Display for ByteSize {
    /// Prints the largest binary unit that divides the size exactly: `"20MiB"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if n != 0 && n.is_multiple_of(size) {
                return write!(f, "{}{}", n / size, unit);
            }
        }
        write!(f, "{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("5d", 432_000_000),
            ("250ms", 250),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("1w", 604_800_000),
            ("0s", 0),
        ];
        for (text, ms) in ok {
            let d: Dur = text.parse().unwrap();
            assert_eq!(d.get().as_millis(), ms, "{text}");
            assert_eq!(
                d.to_string().parse::<Dur>().unwrap(),
                d,
                "{text} round trip"
            );
        }
        for bad in [
            "",
            "5",
            "m",
            "5 minutes",
            "-5s",
            "1.5h",
            "5x",
            "99999999999999999999s",
            "9223372036854775808s",
            "36501d",
            "36500d 1s",
        ] {
            let e = bad.parse::<Dur>().unwrap_err().to_string();
            assert!(
                e.starts_with("expected a duration like \"30s\" or \"5m\", got "),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            "5".parse::<Dur>().unwrap_err().to_string(),
            "expected a duration like \"30s\" or \"5m\", got \"5\" (a unit is needed: ms, s, m, h, d or w)"
        );
        assert_eq!(Dur::secs(5400).to_string(), "1h30m");
        assert_eq!("36500d".parse::<Dur>().unwrap().get(), MAX_DURATION);
        assert_eq!(
            "9223372036854775808s".parse::<Dur>().unwrap_err().to_string(),
            "expected a duration like \"30s\" or \"5m\", got \"9223372036854775808s\" (too large: at most 36500d)"
        );
    }

    #[test]
    fn sizes() {
        let ok = [
            ("20MiB", 20 << 20),
            ("100MiB", 100 << 20),
            ("1GiB", 1 << 30),
            ("512KiB", 512 << 10),
            ("1000", 1000),
            ("1000B", 1000),
            ("10kB", 10_000),
            ("10KB", 10_000),
            ("3MB", 3_000_000),
            ("2GB", 2_000_000_000),
            ("20 MiB", 20 << 20),
            ("0", 0),
        ];
        for (text, n) in ok {
            let s: ByteSize = text.parse().unwrap();
            assert_eq!(s.get(), n, "{text}");
            assert_eq!(
                s.to_string().parse::<ByteSize>().unwrap(),
                s,
                "{text} round trip"
            );
        }
        for bad in ["", "big", "MiB", "-1", "1.5MiB", "20Mb/s", "99999999999TiB"] {
            let e = bad.parse::<ByteSize>().unwrap_err().to_string();
            assert!(
                e.starts_with("expected a size like \"20MiB\", got "),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            "big".parse::<ByteSize>().unwrap_err().to_string(),
            "expected a size like \"20MiB\", got \"big\""
        );
        assert_eq!(ByteSize::mib(20).to_string(), "20MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }
}
