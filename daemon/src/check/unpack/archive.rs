//! Unpacking archives for the scanner: zip, gzip and tar, from memory,
//! within the message's budget of unpacked bytes and its deadline.
//!
//! Everything here is hostile input. Sizes declared in headers are never
//! trusted: every member is read through [`read_bounded`], which stops at
//! the remaining budget or the deadline, whichever comes first. A damaged
//! archive yields the members that could be read before the damage and a
//! [`Member::Damaged`] entry, so that what can be scanned is scanned.

use super::budget::{Budget, Exhausted};
use std::io::{Cursor, Read};
use std::time::Instant;

/// The largest buffer reserved ahead for one member (see [`read_bounded`]).
const MAX_RESERVE: u64 = 1 << 30;

/// Members read from one archive at most; past this the archive counts as
/// damaged (a zip of a million empty files is a denial of service, not mail).
pub const MAX_MEMBERS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Zip,
    Gzip,
    Tar,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Zip => "zip",
            Format::Gzip => "gzip",
            Format::Tar => "tar",
        }
    }
}

/// Recognises an archive by its magic bytes (names lie; magic rarely does).
/// A zip is also recognised by its end record: zip readers find the
/// archive from its end, so bytes in front of it (a self-extractor's
/// program, or a single stray byte) do not stop unzip, Windows or Python
/// from opening it, and must not stop the scanner either.
pub fn detect(data: &[u8]) -> Option<Format> {
    if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
        Some(Format::Zip)
    } else if data.starts_with(&[0x1f, 0x8b]) {
        Some(Format::Gzip)
    } else if data.len() >= 262 && &data[257..262] == b"ustar" {
        Some(Format::Tar)
    } else if has_zip_end_record(data) {
        Some(Format::Zip)
    } else {
        None
    }
}

/// An archive or compressed file that is recognised but not unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unopened {
    pub format: &'static str,
    /// Its header says it is encrypted (a password-protected 7z, or a rar
    /// whose headers are encrypted).
    pub encrypted: bool,
}

/// Recognises, by their magic bytes, the archive and compression formats
/// Mailward does not unpack, so that what it could not look into is never
/// reported "clean" (walkS finding 3: a password-protected 7z with the
/// password in the body was `av/clean`).
pub fn unopened(data: &[u8]) -> Option<Unopened> {
    let plain = |format| {
        Some(Unopened {
            format,
            encrypted: false,
        })
    };
    if data.starts_with(&[0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c]) {
        Some(Unopened {
            format: "7z",
            encrypted: seven_zip_encrypted(data),
        })
    } else if data.starts_with(b"Rar!\x1a\x07\x01\x00") {
        // RAR 5: an archive encryption header (type 4) first means the
        // headers, and so every member, are encrypted.
        Some(Unopened {
            format: "rar",
            encrypted: rar5_first_header_type(&data[8..]) == Some(4),
        })
    } else if data.starts_with(b"Rar!\x1a\x07\x00") {
        // RAR 4: the main header's flag 0x0080 (encrypted headers), or the
        // first file header's flag 0x0004 (encrypted member).
        Some(Unopened {
            format: "rar",
            encrypted: rar4_encrypted(&data[7..]),
        })
    } else if data.len() >= 10
        && data.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&data[3])
        && (data[4..10] == [0x31, 0x41, 0x59, 0x26, 0x53, 0x59]
            || data[4..10] == [0x17, 0x72, 0x45, 0x38, 0x50, 0x90])
    {
        plain("bzip2")
    } else if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        plain("xz")
    } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        plain("zstd")
    } else if data.starts_with(b"MSCF\0\0\0\0") {
        plain("cab")
    } else {
        None
    }
}

/// Whether a 7z archive's header names the AES coder (`06 F1 07 01`):
/// a member encrypted, or with `-mhe` the header itself. The start header
/// gives where the header is (offset after the 32-octet start header, and
/// its size).
fn seven_zip_encrypted(data: &[u8]) -> bool {
    let word = |at: usize| -> Option<u64> {
        data.get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    let (Some(offset), Some(size)) = (word(12), word(20)) else {
        return false;
    };
    let start = 32u64.saturating_add(offset);
    let end = start.saturating_add(size).min(data.len() as u64);
    let Some(header) = usize::try_from(start)
        .ok()
        .zip(usize::try_from(end).ok())
        .and_then(|(s, e)| data.get(s..e))
    else {
        return false;
    };
    header.windows(4).any(|w| w == [0x06, 0xf1, 0x07, 0x01])
}

/// The type of the first header of a RAR 5 archive (after its signature):
/// CRC32, then the header size and type as variable-length integers.
fn rar5_first_header_type(data: &[u8]) -> Option<u64> {
    let mut at = 4;
    let mut vint = || -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..63).step_by(7) {
            let b = *data.get(at)?;
            at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    let _size = vint()?;
    vint()
}

/// A RAR 4 archive's encryption flags (after its signature): the main
/// header (type 0x73) with 0x0080, or the first file header (type 0x74)
/// with 0x0004.
fn rar4_encrypted(data: &[u8]) -> bool {
    let header = |at: usize| -> Option<(u8, u16, usize)> {
        let h = data.get(at..at + 7)?;
        Some((
            h[2],
            u16::from_le_bytes([h[3], h[4]]),
            usize::from(u16::from_le_bytes([h[5], h[6]])),
        ))
    };
    match header(0) {
        Some((0x73, flags, _)) if flags & 0x0080 != 0 => true,
        Some((0x73, _, size)) => {
            matches!(header(size), Some((0x74, flags, _)) if flags & 0x0004 != 0)
        }
        _ => false,
    }
}

/// Whether `data` ends with a zip end-of-central-directory record: its
/// signature, then 18 octets whose last two give the length of the comment
/// that ends the data (so that four stray bytes `PK 05 06` in other data
/// are not taken for one).
fn has_zip_end_record(data: &[u8]) -> bool {
    const RECORD: usize = 22;
    let Some(last) = data.len().checked_sub(RECORD) else {
        return false;
    };
    let first = last.saturating_sub(usize::from(u16::MAX));
    (first..=last).rev().any(|at| {
        data[at..].starts_with(b"PK\x05\x06")
            && usize::from(u16::from_le_bytes([data[at + 20], data[at + 21]]))
                == data.len() - at - RECORD
    })
}

/// One thing found in an archive.
#[derive(Debug)]
pub enum Member {
    File {
        name: String,
        data: Vec<u8>,
    },
    /// Encrypted or password-protected: cannot be looked into.
    Encrypted {
        name: String,
    },
    /// The rest of the archive could not be read (truncated, corrupt);
    /// members before it were returned.
    Damaged {
        problem: String,
    },
    /// A member packed with a method Mailward does not unpack (bzip2,
    /// LZMA, ...): the archive is sound, this member was not looked into
    /// (walkS finding 10: it was called a damaged archive).
    NotUnpacked {
        name: String,
        method: String,
    },
    /// The budget of unpacked bytes ran out.
    Limit {
        problem: String,
    },
    /// The deadline passed while this member was read. The scan's own
    /// time-out finding says so, once, where it happened.
    Deadline {
        name: String,
    },
}

/// Why reading stopped early.
#[derive(Debug)]
enum Stop {
    Budget(Exhausted),
    Deadline,
    Read(std::io::Error),
}

/// Reads `r` to its end into memory, taking from `budget`; stops at the
/// budget or the deadline. On a read error the bytes read so far are kept
/// (a truncated member is still scanned). `size_hint` is the size the
/// archive declares: the buffer is reserved once, up to what the budget
/// allows, so that it does not grow by doubling (a doubling buffer makes
/// resident memory peak at twice the bytes unpacked). Reserved pages that
/// a lying header never fills are never touched, so never resident; and
/// what the member did not fill is given back before it is kept (below).
fn read_bounded(
    r: &mut dyn Read,
    budget: &mut Budget<'_>,
    deadline: Instant,
    size_hint: u64,
) -> (Vec<u8>, Option<Stop>) {
    let mut out = Vec::with_capacity(size_hint.min(budget.available()).min(MAX_RESERVE) as usize);
    let stop = fill(r, &mut out, budget, deadline);
    // The member is kept until the scan ends, and so would its unfilled
    // reservation be: an archive of 10,000 members that each declare
    // 100 MiB and hold nothing would keep a terabyte of address space
    // (nested, tens of them), which a process under an address-space
    // limit or strict overcommit cannot get, and an allocation failure
    // aborts. An honest header fills its buffer exactly: nothing to copy.
    if out.capacity() > out.len() {
        out.shrink_to_fit();
    }
    (out, stop)
}

/// Reads `r` into `out` until its end, the budget or the deadline.
fn fill(
    r: &mut dyn Read,
    out: &mut Vec<u8>,
    budget: &mut Budget<'_>,
    deadline: Instant,
) -> Option<Stop> {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if Instant::now() >= deadline {
            return Some(Stop::Deadline);
        }
        match r.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => {
                let keep = budget.grant(n as u64) as usize;
                out.extend_from_slice(&chunk[..keep]);
                if keep < n {
                    let why = budget.exhausted.unwrap_or(Exhausted::Message);
                    return Some(Stop::Budget(why));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Some(Stop::Read(e)),
        }
    }
}

/// Turns an early stop into the member that reports it.
fn stopped(name: &str, stop: Stop) -> Member {
    match stop {
        Stop::Budget(why) => Member::Limit {
            problem: format!("{name}: {}", why.problem()),
        },
        Stop::Deadline => Member::Deadline {
            name: name.to_string(),
        },
        Stop::Read(e) => Member::Damaged {
            problem: format!("{name}: {e}"),
        },
    }
}

/// Unpacks `data`. `name` is the archive's own name (a gzip member without
/// a stored name is called after it).
pub fn unpack(
    format: Format,
    name: &str,
    data: &[u8],
    budget: &mut Budget<'_>,
    deadline: Instant,
) -> Vec<Member> {
    match format {
        Format::Zip => zip_members(data, budget, deadline),
        Format::Gzip => gzip_members(name, data, budget, deadline),
        Format::Tar => tar_members(data, budget, deadline),
    }
}

/// Reads one member and appends it (and how it stopped, if it did) to
/// `out`; false when the caller must stop reading this archive.
fn take_member(
    out: &mut Vec<Member>,
    name: String,
    r: &mut dyn Read,
    size_hint: u64,
    budget: &mut Budget<'_>,
    deadline: Instant,
) -> bool {
    let (data, stop) = read_bounded(r, budget, deadline, size_hint);
    let go_on = stop.is_none();
    let report = stop.map(|s| stopped(&name, s));
    out.push(Member::File { name, data });
    if let Some(r) = report {
        out.push(r);
    }
    go_on
}

fn zip_members(data: &[u8], budget: &mut Budget<'_>, deadline: Instant) -> Vec<Member> {
    let mut out = Vec::new();
    let mut archive = match zip::ZipArchive::new(Cursor::new(data)) {
        Ok(a) => a,
        // No readable central directory (a truncated transfer, say): walk
        // the local headers from the front instead.
        Err(e) => return zip_stream_members(data, budget, deadline, e.to_string()),
    };
    // Members are read smallest first, by the sizes the central directory
    // declares: a member declaring 1 GiB of zeros then takes what is left
    // of the budget after the 68-octet program beside it has been read,
    // rather than starving it (walkZ 12). A member that lies about its
    // size still stops the reading at the budget.
    let mut to_read: Vec<(u64, usize, String)> = Vec::new();
    for i in 0..archive.len() {
        if i >= MAX_MEMBERS {
            out.push(Member::Damaged {
                problem: format!("more than {MAX_MEMBERS} members"),
            });
            break;
        }
        let (name, encrypted, is_dir, size, method) = match archive.by_index_raw(i) {
            Ok(f) => (
                f.name()
                    .map(|n| n.into_owned())
                    .unwrap_or_else(|_| format!("member {i}")),
                f.encrypted(),
                f.is_dir(),
                f.size(),
                f.compression(),
            ),
            Err(e) => {
                out.push(Member::Damaged {
                    problem: format!("member {i}: {e}"),
                });
                break;
            }
        };
        if is_dir {
            continue;
        }
        if encrypted {
            out.push(Member::Encrypted { name });
            continue;
        }
        if let Some(method) = unsupported_method(Some(method)) {
            out.push(Member::NotUnpacked { name, method });
            continue;
        }
        to_read.push((size, i, name));
    }
    to_read.sort_by_key(|(size, i, _)| (*size, *i));
    for (_, i, name) in to_read {
        match archive.by_index(i) {
            Ok(mut f) => {
                let size = f.size();
                if !take_member(&mut out, name, &mut f, size, budget, deadline) {
                    break;
                }
            }
            Err(e) => out.push(Member::Damaged {
                problem: format!("{name}: {e}"),
            }),
        }
    }
    out
}

/// The name of a zip compression method this build does not unpack
/// (None: stored or deflate, or not known).
fn unsupported_method(method: Option<zip::CompressionMethod>) -> Option<String> {
    let method = method?;
    (!zip::SUPPORTED_COMPRESSION_METHODS.contains(&method))
        .then(|| method.to_string().to_lowercase())
}

fn zip_stream_members(
    data: &[u8],
    budget: &mut Budget<'_>,
    deadline: Instant,
    why: String,
) -> Vec<Member> {
    let mut out = Vec::new();
    let mut cursor = Cursor::new(data);
    let mut complete = false;
    for i in 0..MAX_MEMBERS {
        match zip::read::read_zipfile_from_stream(&mut cursor) {
            Ok(Some(mut f)) => {
                let name = f
                    .name()
                    .map(|n| n.into_owned())
                    .unwrap_or_else(|_| format!("member {i}"));
                if f.is_dir() {
                    continue;
                }
                if f.encrypted() {
                    out.push(Member::Encrypted { name });
                    continue;
                }
                if let Some(method) = unsupported_method(Some(f.compression())) {
                    out.push(Member::NotUnpacked { name, method });
                    continue;
                }
                let size = f.size();
                if !take_member(&mut out, name, &mut f, size, budget, deadline) {
                    return out;
                }
            }
            Ok(None) => {
                complete = true;
                break;
            }
            Err(e) => {
                out.push(Member::Damaged {
                    problem: format!("{why}; reading on from the local headers: {e}"),
                });
                return out;
            }
        }
    }
    if !complete {
        out.push(Member::Damaged {
            problem: format!("{why}; stopped after {MAX_MEMBERS} members"),
        });
    } else {
        out.push(Member::Damaged { problem: why });
    }
    out
}

fn gzip_members(
    name: &str,
    data: &[u8],
    budget: &mut Budget<'_>,
    deadline: Instant,
) -> Vec<Member> {
    let mut out = Vec::new();
    let mut gz = flate2::read::MultiGzDecoder::new(data);
    let inner = gz
        .header()
        .and_then(|h| h.filename())
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .unwrap_or_else(|| {
            let lower = name.to_ascii_lowercase();
            match lower.strip_suffix(".gz").or(lower.strip_suffix(".tgz")) {
                Some(_) if lower.ends_with(".tgz") => format!("{}.tar", &name[..name.len() - 4]),
                Some(_) => name[..name.len() - 3].to_string(),
                None => format!("{name}.unpacked"),
            }
        });
    // ISIZE, the last four octets: the unpacked size modulo 2^32.
    let size = data
        .len()
        .checked_sub(4)
        .and_then(|at| data.get(at..))
        .and_then(|b| b.try_into().ok())
        .map_or(0, |b: [u8; 4]| u64::from(u32::from_le_bytes(b)));
    take_member(&mut out, inner, &mut gz, size, budget, deadline);
    out
}

fn tar_members(data: &[u8], budget: &mut Budget<'_>, deadline: Instant) -> Vec<Member> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(Cursor::new(data));
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            out.push(Member::Damaged {
                problem: e.to_string(),
            });
            return out;
        }
    };
    for (i, entry) in entries.enumerate() {
        if i >= MAX_MEMBERS {
            out.push(Member::Damaged {
                problem: format!("more than {MAX_MEMBERS} members"),
            });
            break;
        }
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                out.push(Member::Damaged {
                    problem: format!("member {i}: {e}"),
                });
                break;
            }
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| format!("member {i}"));
        let size = entry.size();
        if !take_member(&mut out, name, &mut entry, size, budget, deadline) {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::budget::MemoryPool;
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn a_member_keeps_no_more_memory_than_it_holds_whatever_its_header_says() {
        // A zip or tar header may declare 100 MiB for a member of 3 bytes:
        // the buffer reserved for it shrinks to the bytes read, so that
        // thousands of such members do not keep their reservations.
        let pool = MemoryPool::unbounded();
        let mut budget = Budget::new(200 << 20, &pool);
        let (data, stop) = read_bounded(&mut &b"abc"[..], &mut budget, far(), 100 << 20);
        assert!(stop.is_none());
        assert_eq!(data, b"abc");
        assert!(data.capacity() < 4096, "kept {} bytes", data.capacity());
        // An honest header: one buffer of the right size, filled.
        let body = vec![7u8; 300_000];
        let (data, _) = read_bounded(&mut &body[..], &mut budget, far(), 300_000);
        assert_eq!((data.len(), data.capacity()), (300_000, 300_000));
    }

    #[test]
    fn a_zip_with_bytes_in_front_is_found_by_its_end_record_and_read() {
        let z = zip_of(&[("eicar.com", b"the member")]);
        let prefixed = [b"\nMZ self-extractor".as_slice(), &z].concat();
        assert_eq!(detect(&prefixed), Some(Format::Zip));
        let pool = MemoryPool::unbounded();
        let mut budget = Budget::new(1 << 20, &pool);
        let m = unpack(Format::Zip, "p.zip", &prefixed, &mut budget, far());
        assert!(
            matches!(&m[..], [Member::File { name, data }] if name == "eicar.com" && data == b"the member"),
            "{m:?}"
        );
        // The signature alone, not at the end record's place, is no zip.
        assert_eq!(detect(b"text PK\x05\x06 and more text after it"), None);
    }

    #[test]
    fn detects_formats_by_magic() {
        assert_eq!(detect(&zip_of(&[("a", b"x")])), Some(Format::Zip));
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]), Some(Format::Gzip));
        assert_eq!(detect(b"plain text"), None);
    }

    #[test]
    fn unpacks_zip_members_within_budget() {
        let pool = MemoryPool::unbounded();
        let z = zip_of(&[("a.txt", b"hello"), ("b.bin", &[7u8; 1000])]);
        let mut budget = Budget::new(10_000, &pool);
        let m = unpack(Format::Zip, "z.zip", &z, &mut budget, far());
        assert!(
            matches!(&m[0], Member::File { name, data } if name == "a.txt" && data == b"hello")
        );
        assert!(
            matches!(&m[1], Member::File { name, data } if name == "b.bin" && data.len() == 1000)
        );
        assert_eq!(budget.left(), 10_000 - 1005);
        let mut small = Budget::new(100, &pool);
        let m = unpack(Format::Zip, "z.zip", &z, &mut small, far());
        assert!(m.iter().any(|x| matches!(x, Member::Limit { .. })), "{m:?}");
        assert_eq!(small.left(), 0);
    }

    #[test]
    fn a_truncated_zip_still_gives_its_first_members() {
        let z = zip_of(&[
            ("first.txt", b"first member"),
            ("second.txt", &[b'x'; 5000]),
        ]);
        let cut = &z[..z.len() / 2];
        let pool = MemoryPool::unbounded();
        let mut budget = Budget::new(1 << 20, &pool);
        let m = unpack(Format::Zip, "z.zip", cut, &mut budget, far());
        assert!(
            matches!(&m[0], Member::File { name, .. } if name == "first.txt"),
            "{m:?}"
        );
        assert!(
            m.iter().any(|x| matches!(x, Member::Damaged { .. })),
            "{m:?}"
        );
    }

    #[test]
    fn gzip_and_tar() {
        let mut t = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, "dir/file.txt", &b"data"[..]).unwrap();
        let tarball = t.into_inner().unwrap();
        assert_eq!(detect(&tarball), Some(Format::Tar));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tarball).unwrap();
        let tgz = gz.finish().unwrap();
        let pool = MemoryPool::unbounded();
        let mut budget = Budget::new(1 << 20, &pool);
        let m = unpack(Format::Gzip, "x.tgz", &tgz, &mut budget, far());
        let Member::File { name, data } = &m[0] else {
            panic!("{m:?}")
        };
        assert_eq!(name, "x.tar");
        let inner = unpack(Format::Tar, name, data, &mut budget, far());
        assert!(
            matches!(&inner[0], Member::File { name, data } if name == "dir/file.txt" && data == b"data")
        );
    }

    #[test]
    fn a_deflate_bomb_stops_at_the_budget() {
        // 64 MiB of zeros packs into about 64 KiB.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("zeros", zip::write::SimpleFileOptions::default())
            .unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..64 {
            w.write_all(&chunk).unwrap();
        }
        let z = w.finish().unwrap().into_inner();
        assert!(z.len() < 1 << 20);
        let pool = MemoryPool::unbounded();
        let mut budget = Budget::new(4 << 20, &pool);
        let m = unpack(Format::Zip, "bomb.zip", &z, &mut budget, far());
        assert!(m.iter().any(|x| matches!(x, Member::Limit { .. })));
        let held: usize = m
            .iter()
            .map(|x| match x {
                Member::File { data, .. } => data.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(held, 4 << 20, "no more than the budget is ever held");
    }

    #[test]
    fn a_small_member_beside_a_bomb_is_read_before_the_bomb_takes_the_budget() {
        // walkZ 12: the bomb came first in the archive and took the whole
        // budget; the program behind it was never read.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        w.start_file("zeros.bin", options).unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..16 {
            w.write_all(&chunk).unwrap();
        }
        w.start_file("tool.com", options).unwrap();
        w.write_all(b"the program").unwrap();
        let z = w.finish().unwrap().into_inner();
        let pool = MemoryPool::unbounded();
        let mut budget = Budget::new(4 << 20, &pool);
        let m = unpack(Format::Zip, "bomb.zip", &z, &mut budget, far());
        assert!(
            m.iter().any(
                |x| matches!(x, Member::File { name, data } if name == "tool.com" && data == b"the program")
            ),
            "{:?}",
            m.iter().map(|x| format!("{x:?}").chars().take(80).collect::<String>()).collect::<Vec<_>>()
        );
        assert!(m.iter().any(|x| matches!(x, Member::Limit { .. })));
    }

    #[test]
    fn bombs_scanned_side_by_side_share_one_bound() {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("zeros", zip::write::SimpleFileOptions::default())
            .unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..16 {
            w.write_all(&chunk).unwrap();
        }
        let z = w.finish().unwrap().into_inner();
        // Each message may unpack 16 MiB, but all of them together 8 MiB.
        let pool = MemoryPool::new(8 << 20);
        let mut first = Budget::new(16 << 20, &pool);
        let a = unpack(Format::Zip, "a.zip", &z, &mut first, far());
        let mut second = Budget::new(16 << 20, &pool);
        let b = unpack(Format::Zip, "b.zip", &z, &mut second, far());
        assert_eq!(pool.in_use(), 8 << 20, "never more than the pool");
        assert_eq!(first.exhausted, Some(Exhausted::Shared));
        assert_eq!(second.exhausted, Some(Exhausted::Shared));
        let problem = |m: &[Member]| {
            m.iter()
                .find_map(|x| match x {
                    Member::Limit { problem } => Some(problem.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        };
        assert!(problem(&a).contains("limits.scan_memory"), "{a:?}");
        assert!(problem(&b).contains("limits.scan_memory"), "{b:?}");
        drop((first, second));
        assert_eq!(pool.in_use(), 0);
    }
    /// `SEVEN_ZIP: 7z a p.7z h.txt`
    const SEVEN_ZIP: &[u8] = &[
        0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c, 0x00, 0x04, 0x5b, 0xbe, 0x9f, 0x31, 0x12, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x52, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb3, 0x33,
        0x70, 0xbc, 0x01, 0x00, 0x0d, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x61, 0x72, 0x63, 0x68,
        0x69, 0x76, 0x65, 0x0a, 0x00, 0x01, 0x04, 0x06, 0x00, 0x01, 0x09, 0x12, 0x00, 0x07, 0x0b,
        0x01, 0x00, 0x01, 0x21, 0x21, 0x01, 0x00, 0x0c, 0x0e, 0x00, 0x08, 0x0a, 0x01, 0x75, 0x83,
        0xf1, 0x06, 0x00, 0x00, 0x05, 0x01, 0x19, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x11, 0x0d, 0x00, 0x68, 0x00, 0x2e, 0x00, 0x74, 0x00, 0x78,
        0x00, 0x74, 0x00, 0x00, 0x00, 0x14, 0x0a, 0x01, 0x00, 0x75, 0x85, 0x7f, 0xc8, 0xd6, 0x84,
        0xdd, 0x01, 0x15, 0x06, 0x01, 0x00, 0x20, 0x80, 0xa4, 0x81, 0x00, 0x00,
    ];
    /// `SEVEN_ZIP_ENCRYPTED: 7z a -p pw e.7z h.txt`
    const SEVEN_ZIP_ENCRYPTED: &[u8] = &[
        0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c, 0x00, 0x04, 0xd5, 0x06, 0x10, 0x8d, 0x20, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x62, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x32, 0x2a,
        0x2f, 0x34, 0xc9, 0x5b, 0xa1, 0xbb, 0x8c, 0x1e, 0xe8, 0x8c, 0x4a, 0x5d, 0x6f, 0x94, 0x53,
        0x76, 0xf9, 0xd5, 0xe7, 0xc4, 0x33, 0x7f, 0x6a, 0x9b, 0x4d, 0xe6, 0xa1, 0x72, 0x22, 0x61,
        0x07, 0x9d, 0xa2, 0xf3, 0x01, 0x04, 0x06, 0x00, 0x01, 0x09, 0x20, 0x00, 0x07, 0x0b, 0x01,
        0x00, 0x02, 0x24, 0x06, 0xf1, 0x07, 0x01, 0x12, 0x53, 0x0f, 0xf7, 0x9c, 0xe5, 0x00, 0x67,
        0x67, 0xdf, 0xa1, 0xf3, 0x31, 0x42, 0xc9, 0xe4, 0x88, 0x04, 0xf1, 0x21, 0x21, 0x01, 0x00,
        0x01, 0x00, 0x0c, 0x12, 0x0e, 0x00, 0x08, 0x0a, 0x01, 0x75, 0x83, 0xf1, 0x06, 0x00, 0x00,
        0x05, 0x01, 0x19, 0x01, 0x00, 0x11, 0x0d, 0x00, 0x68, 0x00, 0x2e, 0x00, 0x74, 0x00, 0x78,
        0x00, 0x74, 0x00, 0x00, 0x00, 0x14, 0x0a, 0x01, 0x00, 0x75, 0x85, 0x7f, 0xc8, 0xd6, 0x84,
        0xdd, 0x01, 0x15, 0x06, 0x01, 0x00, 0x20, 0x80, 0xa4, 0x81, 0x00, 0x00,
    ];
    /// `SEVEN_ZIP_HEADERS_ENCRYPTED: 7z a -p pw -mhe=on h.7z h.txt`
    const SEVEN_ZIP_HEADERS_ENCRYPTED: &[u8] = &[
        0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c, 0x00, 0x04, 0xc2, 0xcf, 0xcc, 0xb2, 0x90, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x2e, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x33,
        0xcb, 0x44, 0xe1, 0xa5, 0xbf, 0x5a, 0x3e, 0x63, 0x15, 0x35, 0xb2, 0x7c, 0xcf, 0x31, 0xf3,
        0xa7, 0xce, 0x7d, 0x67, 0xf3, 0xd2, 0xda, 0x5e, 0xcb, 0x1c, 0x59, 0x23, 0xe1, 0xc2, 0x52,
        0xd0, 0x98, 0x18, 0x9f, 0x71, 0xf9, 0x2a, 0x41, 0x8c, 0x08, 0x1b, 0x77, 0x87, 0xde, 0xb7,
        0x16, 0x2b, 0x83, 0xb1, 0x2f, 0xd4, 0xdf, 0x55, 0x2e, 0xb0, 0x8e, 0x5e, 0x3a, 0x60, 0x77,
        0x81, 0xca, 0x5e, 0xca, 0x8f, 0xc8, 0x17, 0xfe, 0x1c, 0xcc, 0xe8, 0x83, 0x3b, 0x64, 0x59,
        0x94, 0x29, 0xe6, 0xcf, 0xcc, 0x52, 0xe6, 0xc6, 0x19, 0x63, 0xd4, 0x70, 0x85, 0x0d, 0xe4,
        0x22, 0xf7, 0x66, 0x7e, 0x5d, 0x42, 0x81, 0x0a, 0x87, 0xe8, 0x28, 0x68, 0x1e, 0x0d, 0xac,
        0xa7, 0xd5, 0x3a, 0xf4, 0x1f, 0x34, 0xb2, 0x01, 0xf1, 0x55, 0xf8, 0xe5, 0x41, 0x3a, 0xb6,
        0x5b, 0x74, 0x77, 0x64, 0x05, 0x08, 0xa8, 0xa7, 0x4d, 0x31, 0xd5, 0x97, 0x26, 0xa6, 0x84,
        0x26, 0xd0, 0x48, 0x49, 0x72, 0x32, 0xbc, 0x19, 0x1d, 0x70, 0x8f, 0x17, 0x06, 0x20, 0x01,
        0x09, 0x70, 0x00, 0x07, 0x0b, 0x01, 0x00, 0x01, 0x24, 0x06, 0xf1, 0x07, 0x01, 0x12, 0x53,
        0x0f, 0x3b, 0xc6, 0xbe, 0xab, 0x6e, 0xad, 0xf8, 0x97, 0xa9, 0x82, 0x55, 0x8a, 0x83, 0x17,
        0x43, 0x24, 0x0c, 0x62, 0x0a, 0x01, 0x5d, 0x2d, 0x28, 0x2f, 0x00, 0x00,
    ];

    #[test]
    fn formats_not_unpacked_are_known_and_encryption_is_seen() {
        assert_eq!(
            unopened(SEVEN_ZIP),
            Some(Unopened {
                format: "7z",
                encrypted: false
            })
        );
        for (what, data) in [
            ("7z -p", SEVEN_ZIP_ENCRYPTED),
            ("7z -p -mhe=on", SEVEN_ZIP_HEADERS_ENCRYPTED),
        ] {
            assert_eq!(
                unopened(data),
                Some(Unopened {
                    format: "7z",
                    encrypted: true
                }),
                "{what}"
            );
        }
        // RAR 4: main header (type 0x73, size 13), then a file header
        // (type 0x74) flagged encrypted; and headers encrypted (0x0080).
        let mut rar4 = b"Rar!\x1a\x07\x00".to_vec();
        rar4.extend([0, 0, 0x73, 0x00, 0x00, 13, 0, 0, 0, 0, 0, 0, 0]);
        let plain4 = [rar4.clone(), vec![0, 0, 0x74, 0x00, 0x00, 40, 0]].concat();
        let file4 = [rar4.clone(), vec![0, 0, 0x74, 0x04, 0x00, 40, 0]].concat();
        let mut headers4 = rar4.clone();
        headers4[7 + 3] = 0x80;
        assert_eq!(
            unopened(&plain4),
            Some(Unopened {
                format: "rar",
                encrypted: false
            })
        );
        assert_eq!(
            unopened(&file4),
            Some(Unopened {
                format: "rar",
                encrypted: true
            })
        );
        assert_eq!(
            unopened(&headers4),
            Some(Unopened {
                format: "rar",
                encrypted: true
            })
        );
        // RAR 5: CRC32, size, type 4 (archive encryption) or 1 (main).
        let rar5 = |kind: u8| {
            [
                b"Rar!\x1a\x07\x01\x00".as_slice(),
                &[1, 2, 3, 4, 12, kind, 0],
            ]
            .concat()
        };
        assert_eq!(
            unopened(&rar5(4)),
            Some(Unopened {
                format: "rar",
                encrypted: true
            })
        );
        assert_eq!(
            unopened(&rar5(1)),
            Some(Unopened {
                format: "rar",
                encrypted: false
            })
        );
        let bz = [
            b"BZh9".as_slice(),
            &[0x31, 0x41, 0x59, 0x26, 0x53, 0x59, 0, 0],
        ]
        .concat();
        assert_eq!(unopened(&bz).map(|u| u.format), Some("bzip2"));
        assert_eq!(
            unopened(b"BZh9 is not a bzip2 stream").map(|u| u.format),
            None
        );
        let xz = [0xfd, b'7', b'z', b'X', b'Z', 0x00, 0, 4];
        assert_eq!(unopened(&xz).map(|u| u.format), Some("xz"));
        assert_eq!(
            unopened(&[0x28, 0xb5, 0x2f, 0xfd, 0x24, 0x0d]).map(|u| u.format),
            Some("zstd")
        );
        assert_eq!(unopened(b"MSCF\0\0\0\0rest").map(|u| u.format), Some("cab"));
        assert_eq!(unopened(b"just text"), None);
        // Cut short: known, never a panic.
        assert_eq!(unopened(&SEVEN_ZIP[..14]).map(|u| u.encrypted), Some(false));
        assert_eq!(unopened(&rar4[..9]).map(|u| u.encrypted), Some(false));
    }

    #[test]
    fn a_member_packed_with_an_unsupported_method_is_not_called_damage() {
        // A stored zip whose member says bzip2 (12) in both headers.
        let mut z = zip_of(&[("a.txt", b"hello"), ("b.txt", b"world")]);
        let local = 0;
        z[local + 8] = 12;
        let central = z.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        z[central + 10] = 12;
        let pool = MemoryPool::unbounded();
        let mut budget = Budget::new(1 << 20, &pool);
        let members = unpack(Format::Zip, "t.zip", &z, &mut budget, far());
        assert!(
            matches!(&members[0], Member::NotUnpacked { name, method } if name == "a.txt" && method == "bzip2"),
            "{members:?}"
        );
        assert!(
            matches!(&members[1], Member::File { name, data } if name == "b.txt" && data == b"world"),
            "{members:?}"
        );
    }
}
