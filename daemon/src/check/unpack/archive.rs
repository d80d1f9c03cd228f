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

mod binhex;
mod yenc;

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
    /// A text holding BinHex 4.0 ([`binhex`]).
    BinHex,
    /// A text holding yEnc blocks ([`yenc`]).
    Yenc,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Zip => "zip",
            Format::Gzip => "gzip",
            Format::Tar => "tar",
            Format::BinHex => "BinHex",
            Format::Yenc => "yEnc",
        }
    }
}

/// Whether a part declared BinHex (`application/mac-binhex40`) holds no
/// BinHex this scanner can find: it was not looked into, so it must not
/// be called clean (for the caller to report `av/error`, "not unpacked:
/// BinHex").
pub fn binhex_not_found(mime: &str, data: &[u8]) -> bool {
    mime.eq_ignore_ascii_case("application/mac-binhex40") && detect(data) != Some(Format::BinHex)
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
        encoded_text(data)
    }
}

/// A text that carries a file encoded as text, BinHex or yEnc (walkAJ 5:
/// both were `av/clean` with the EICAR inside). A mail saved as a file is
/// not: its parts are walked as a message's.
fn encoded_text(data: &[u8]) -> Option<Format> {
    if super::mail_header(data).is_some_and(|h| h.fields >= 2 && h.mime && h.mail && h.body) {
        None
    } else if binhex::start(data).is_some() {
        Some(Format::BinHex)
    } else if yenc::holds(data) {
        Some(Format::Yenc)
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
        /// A zip member's other names, where they differ from the one the
        /// zip library gives: its local header's (a reader that streams
        /// the zip, as Java's ZipInputStream and many web mailers do,
        /// saves it under that one; walkBR N7: `aaaa.txt` in the
        /// directory, `evil.bat` in the local header, passed `*.bat`) and
        /// the central directory's own bytes under an Info-ZIP Unicode
        /// Path field (jar and java.util.zip ignore the field; walkBS S3).
        also: Vec<String>,
    },
    /// Encrypted or password-protected: cannot be looked into.
    Encrypted {
        name: String,
        /// Its other names, as [`Member::File`]'s (walkBU U4).
        also: Vec<String>,
    },
    /// The rest of the archive could not be read (truncated, corrupt);
    /// members before it were returned.
    Damaged { problem: String },
    /// A member packed with a method Mailward does not unpack (bzip2,
    /// LZMA, ...): the archive is sound, this member was not looked into
    /// (walkS finding 10: it was called a damaged archive).
    NotUnpacked {
        name: String,
        method: String,
        also: Vec<String>,
    },
    /// The budget of unpacked bytes ran out.
    Limit { problem: String },
    /// The deadline passed while this member was read. The scan's own
    /// time-out finding says so, once, where it happened.
    Deadline { name: String },
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
        Format::BinHex | Format::Yenc => text_members(data, budget, deadline),
    }
}

/// The files a text carries encoded: BinHex, yEnc and uuencode (the
/// uuencoded ones too, as the text is read here and not as a text).
fn text_members(data: &[u8], budget: &mut Budget<'_>, deadline: Instant) -> Vec<Member> {
    let mut out = Vec::new();
    let mut files: Vec<(String, Vec<u8>, Option<String>)> = Vec::new();
    match binhex::decode(data, budget.available()) {
        Some(Ok(f)) => {
            if !f.resource.is_empty() {
                files.push((format!("{} (resource fork)", f.name), f.resource, None));
            }
            let problem = f.problem.map(|p| format!("{}: {p}", f.name));
            files.insert(0, (f.name, f.data, problem));
        }
        Some(Err(problem)) => out.push(Member::Limit { problem }),
        None => {}
    }
    for y in yenc::find(data) {
        files.push((y.name, y.data, y.problem));
    }
    for u in super::uuencode::find(data) {
        files.push((u.name, u.data, None));
    }
    for (name, bytes, problem) in files {
        let size = bytes.len() as u64;
        if let Some(problem) = problem {
            out.push(Member::Damaged { problem });
        }
        if take_member(
            &mut out,
            name,
            &mut bytes.as_slice(),
            size,
            budget,
            deadline,
        ) == Taken::Stop
        {
            break;
        }
    }
    out
}

/// How reading one member ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    /// Read to its end.
    Whole,
    /// Its own bytes are damaged (a size field that lies, a corrupt
    /// deflate stream): the bytes read so far were kept. Where the archive
    /// says where each member starts (a zip's central directory), the
    /// other members are still there to read.
    Damaged,
    /// The budget or the deadline: nothing more is read from anything.
    Stop,
}

/// Reads one member and appends it (and how it stopped, if it did) to
/// `out`.
fn take_member(
    out: &mut Vec<Member>,
    name: String,
    r: &mut dyn Read,
    size_hint: u64,
    budget: &mut Budget<'_>,
    deadline: Instant,
) -> Taken {
    let (data, stop) = read_bounded(r, budget, deadline, size_hint);
    let taken = match &stop {
        None => Taken::Whole,
        Some(Stop::Read(_)) => Taken::Damaged,
        Some(Stop::Budget(_) | Stop::Deadline) => Taken::Stop,
    };
    let report = stop.map(|s| stopped(&name, s));
    out.push(Member::File {
        name,
        data,
        also: Vec::new(),
    });
    if let Some(r) = report {
        out.push(r);
    }
    taken
}

fn zip_members(data: &[u8], budget: &mut Budget<'_>, deadline: Instant) -> Vec<Member> {
    let mut out = Vec::new();
    let mut archive = match zip::ZipArchive::new(Cursor::new(data)) {
        Ok(a) => a,
        // No central directory the library reads (a truncated transfer,
        // an end record that lies): read it by hand, and the local headers.
        Err(e) => return zip_members_by_hand(data, budget, deadline, e.to_string()),
    };
    // Members are read smallest first, by the sizes the central directory
    // declares: a member declaring 1 GiB of zeros then takes what is left
    // of the budget after the 68-octet program beside it has been read,
    // rather than starving it (walkZ 12). A member that lies about its
    // size still stops the reading at the budget.
    // (size, index, name, other names, local header, read by the local
    // header too)
    let mut to_read: Vec<(u64, usize, String, Vec<String>, u64, bool)> = Vec::new();
    // Where each member the central directory lists lies (its local
    // header and data), to tell the local headers it does not list.
    let mut listed: Vec<Listed> = Vec::new();
    // The central directory's own name bytes, by local header offset: the
    // zip library gives a Unicode Path field's name in their place.
    let records = central_records(data, archive.central_directory_start(), archive.offset());
    let central: std::collections::HashMap<u64, &[u8]> = records
        .iter()
        .take(archive.len())
        .filter_map(|r| Some((r.local?, r.name)))
        .collect();
    // Members read by their local header alone, after the others: records
    // past the end record's count (walkBZ Z1), and members the central
    // directory calls encrypted whose local header does not (walkBZ Z3:
    // jar and 7-Zip extract them).
    let mut by_local: Vec<(u64, Option<String>, Vec<String>)> = Vec::new();
    // Each with its central name, the one unzip and Python extract it
    // under (walkCB CB3: a script named evil.js there, notes2.txt in its
    // local header, passed the name filter).
    let beyond = |records: &[CentralRecord<'_>]| -> Vec<(u64, u64, String)> {
        records
            .iter()
            .skip(archive.len())
            .take(MAX_MEMBERS + 1)
            .filter_map(|r| {
                let name = String::from_utf8_lossy(r.name).into_owned();
                Some((r.local?, r.compressed, name))
            })
            .collect()
    };
    let mut past_count = beyond(&records);
    if past_count.is_empty() {
        // The library places a directory of no entries at the end record
        // (an end record's count of 0 hid every member): the directory
        // is also looked for where the end record says it is.
        // So are those of the ZIP64 end records (walkCE CE2: a count of
        // 0 there, behind a locator pointing at a decoy).
        let starts = central_directory_start(data)
            .into_iter()
            .chain(zip64_directory_starts(data))
            .filter(|(s, _)| *s != archive.central_directory_start());
        for (start, base) in starts {
            if past_count.len() <= MAX_MEMBERS {
                past_count.extend(beyond(&central_records(data, start, base)));
            }
        }
    }
    // A directory of more records than are read says so, whatever the
    // end record's count (walkCB CB2).
    let too_many = archive.len() + past_count.len() > MAX_MEMBERS;
    past_count.truncate(MAX_MEMBERS.saturating_sub(archive.len()));
    for (at, compressed, name) in past_count {
        listed.push(Listed::of(data, at, compressed));
        let also = local_name(data, at)
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .filter(|l| *l != name)
            .into_iter()
            .collect();
        by_local.push((at, Some(name), also));
    }
    for i in 0..archive.len() {
        if i >= MAX_MEMBERS {
            out.push(Member::Damaged {
                problem: format!("more than {MAX_MEMBERS} members"),
            });
            break;
        }
        let (name, encrypted, is_dir, size, compressed, method, also, header_start) =
            match archive.by_index_raw(i) {
                Ok(f) => {
                    // A "directory" of no size in the central directory whose
                    // local header says it holds data is left to the walk of
                    // the local headers, which reads it from there, as jar does
                    // (walkBU U2: a deflated EICAR passed as clean).
                    let dir_only = f.is_dir() && f.compressed_size() == 0;
                    if !(dir_only && local_declares_data(data, f.header_start())) {
                        listed.push(Listed::of(data, f.header_start(), f.compressed_size()));
                    }
                    let name = f
                        .name()
                        .map(|n| n.into_owned())
                        .unwrap_or_else(|_| format!("member {i}"));
                    let central_raw = central
                        .get(&f.header_start())
                        .copied()
                        .unwrap_or_else(|| f.name_raw());
                    let also = other_names(&name, central_raw, data, f.header_start());
                    // A "directory" with data in it is read as a file: jar
                    // extracts it (walkBS S8: `aaaa/` in the central directory,
                    // a deflated eicar.com in its local header, was skipped).
                    let is_dir = dir_only;
                    (
                        name,
                        f.encrypted(),
                        is_dir,
                        f.size(),
                        f.compressed_size(),
                        f.compression(),
                        also,
                        f.header_start(),
                    )
                }
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
            if RawLocal::at(data, header_start)
                .is_some_and(|h| h.flags & LocalHeader::ENCRYPTED == 0)
            {
                by_local.push((header_start, Some(name.clone()), also.clone()));
            }
            out.push(Member::Encrypted { name, also });
            continue;
        }
        if let Some(method) = unsupported_method(Some(method)) {
            out.push(Member::NotUnpacked { name, method, also });
            continue;
        }
        // unzip and jar take the method from the local header, Python
        // from the central directory: a member whose two headers differ
        // is read both ways (walkBX N1: "stored" in the central
        // directory, a deflated EICAR by its local header, passed).
        let methods_differ = method_code(method)
            .is_some_and(|c| local_method(data, header_start).is_some_and(|m| m != c));
        // And a stored member whose local header gives more octets than
        // the central directory (walkBZ Z4: central sizes and CRC 0, a
        // program of 286 octets that unzip writes without a word).
        // (Its ZIP64 sizes too, walkCB CB7.)
        let local_longer = LocalHeader::at_offset(data, header_start).is_some_and(|h| {
            h.method == 0 && h.flags & LocalHeader::DESCRIPTOR == 0 && h.compressed > compressed
        });
        to_read.push((
            size,
            i,
            name,
            also,
            header_start,
            methods_differ || local_longer,
        ));
    }
    to_read.sort_by_key(|(size, i, ..)| (*size, *i));
    let mut stopped_early = false;
    for (_, i, name, names, header_start, read_beside) in to_read {
        match archive.by_index(i) {
            Ok(mut f) => {
                let size = f.size();
                let at = out.len();
                // A member whose own bytes are damaged stops only itself:
                // the central directory says where the next one starts,
                // and unzip and 7-Zip extract it (walkAJ 6: one size
                // field set to 1 in a harmless member hid the EICAR beside
                // it, and the zip went out as `av/error`).
                let second_name = read_beside.then(|| name.clone());
                let mut taken = take_member(&mut out, name, &mut f, size, budget, deadline);
                // Its central sizes may be what lies: unzip and jar read
                // it by its local header's (walkBV V4: an EICAR whose
                // central sizes were 0 went out as `av/error`).
                if taken == Taken::Damaged {
                    taken = reread_local(data, header_start, at, &mut out, budget, deadline);
                } else if let Some(name) = second_name.filter(|_| taken == Taken::Whole) {
                    taken = read_local_beside(data, header_start, name, &mut out, budget, deadline);
                }
                for m in out.iter_mut().skip(at) {
                    if let Member::File { also, .. } = m {
                        *also = names.clone();
                    }
                }
                drop_empty_directory(&mut out, at);
                if taken == Taken::Stop {
                    stopped_early = true;
                    break;
                }
            }
            Err(e) => out.push(Member::Damaged {
                problem: format!("{name}: {e}"),
            }),
        }
    }
    // Each local header is read once, and damaged ones are tried a
    // bounded number of times (walkCB CB4: 10,000 records of one header
    // before 1 MB of false descriptors took two minutes).
    let mut read: std::collections::HashSet<u64> = std::collections::HashSet::new();
    let mut damaged = 0usize;
    for (header_start, name, also) in by_local {
        if stopped_early || damaged >= MAX_DAMAGED_LOCAL {
            break;
        }
        if !read.insert(header_start) {
            continue;
        }
        let Some(mut local) = LocalHeader::at_offset(data, header_start) else {
            continue;
        };
        if let Some(name) = name {
            local.name = name;
        }
        let at = out.len();
        let (taken, _) = read_local(data, &local, &mut out, budget, deadline);
        for m in out.iter_mut().skip(at) {
            if let Member::File { also: a, .. } = m {
                a.clone_from(&also);
            }
        }
        drop_empty_directory(&mut out, at);
        stopped_early = taken == Taken::Stop;
        damaged += usize::from(taken == Taken::Damaged);
    }
    if too_many && archive.len() <= MAX_MEMBERS {
        out.push(Member::Damaged {
            problem: format!("more than {MAX_MEMBERS} members"),
        });
    }
    // (Past MAX_MEMBERS listed, that is said once, above: walkBX N2.)
    if !stopped_early && archive.len() <= MAX_MEMBERS && !too_many {
        let room = MAX_MEMBERS.saturating_sub(archive.len());
        unlisted_members(data, listed, room, &mut out, budget, deadline);
    }
    out
}

/// One record of a zip's central directory, as read by hand.
struct CentralRecord<'a> {
    /// Its name bytes.
    name: &'a [u8],
    /// Where its local header is in the file (none: an offset of all ones
    /// that no ZIP64 field gives).
    local: Option<u64>,
    /// Its compressed size (32-bit field).
    compressed: u64,
}

/// The records of the central directory from `dir_start` (`base`: what
/// precedes the zip, a self-extractor's program), as many as follow one
/// another (at most one more than [`MAX_MEMBERS`]), whatever the end
/// record's count says: Python and 7-Zip read the directory by its size,
/// and records past the count hide members from a reader that trusts it
/// (walkBZ Z1: an EICAR whose record came second under a count of 1).
fn central_records(data: &[u8], dir_start: u64, base: u64) -> Vec<CentralRecord<'_>> {
    let mut records = Vec::new();
    let Ok(mut at) = usize::try_from(dir_start) else {
        return records;
    };
    let u16_at = |r: &[u8], i: usize| usize::from(u16::from_le_bytes([r[i], r[i + 1]]));
    let u32_at = |r: &[u8], i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
    while records.len() <= MAX_MEMBERS {
        let Some(record) = data.get(at..at.saturating_add(46)) else {
            break;
        };
        if record[..4] != *b"PK\x01\x02" {
            break;
        }
        let (n, x, c) = (u16_at(record, 28), u16_at(record, 30), u16_at(record, 32));
        let Some(name) = data.get(at + 46..at + 46 + n) else {
            break;
        };
        // The ZIP64 field holds, in this order, the sizes and the offset
        // whose 32-bit fields are all ones (walkCB CB1: a record past the
        // count whose offset was there was skipped).
        let mut fields = [
            u64::from(u32_at(record, 24)),
            u64::from(u32_at(record, 20)),
            u64::from(u32_at(record, 42)),
        ];
        let mut extra = data.get(at + 46 + n..at + 46 + n + x).unwrap_or_default();
        while let [a, b, c0, d, rest @ ..] = extra {
            let len = usize::from(u16::from_le_bytes([*c0, *d]));
            let Some(body) = rest.get(..len) else { break };
            if u16::from_le_bytes([*a, *b]) == 0x0001 {
                let mut words = body
                    .chunks_exact(8)
                    .filter_map(|w| <[u8; 8]>::try_from(w).ok())
                    .map(u64::from_le_bytes);
                for f in fields.iter_mut().filter(|f| **f == u64::from(u32::MAX)) {
                    if let Some(w) = words.next() {
                        *f = w;
                    }
                }
            }
            extra = &rest[len..];
        }
        let [_, compressed, offset] = fields;
        records.push(CentralRecord {
            name,
            local: (offset != u64::from(u32::MAX)).then(|| base.saturating_add(offset)),
            compressed,
        });
        at += 46 + n + x + c;
    }
    records
}

/// Where the central directory of the last end record (`PK 05 06`) in
/// `data` starts: at the offset it gives, or, when no record is there,
/// right before the end record by the size it gives (bytes added in front
/// of a zip whose offsets were not adjusted, as unzip and Python find it);
/// with the base its records' offsets count from (that shift, walkCB
/// CB8: a self-extractor's stub moved every offset of a count-0 zip).
fn central_directory_start(data: &[u8]) -> Option<(u64, u64)> {
    let end = crate::text::rfind_bytes(data, b"PK\x05\x06")?;
    let e = data.get(end..end + 22)?;
    let size = u32::from_le_bytes([e[12], e[13], e[14], e[15]]) as usize;
    let offset = u32::from_le_bytes([e[16], e[17], e[18], e[19]]) as usize;
    let record_at = |at: usize| data.get(at..at.saturating_add(4)) == Some(b"PK\x01\x02");
    if record_at(offset) {
        Some((offset as u64, 0))
    } else {
        let shifted = end.checked_sub(size)?;
        let base = shifted.checked_sub(offset)?;
        record_at(shifted).then_some((shifted as u64, base as u64))
    }
}

/// Where the central directories of the ZIP64 end records of `data`
/// start, with their bases (see [`central_directory_start`]): the one its
/// locator points at and the one right before the locator, where Python
/// looks (walkBZ a07b: a locator pointing at a decoy record hid the real
/// directory's EICAR). Both are read; a member both list is read once.
fn zip64_directory_starts(data: &[u8]) -> Vec<(u64, u64)> {
    let u64_at = |at: usize| {
        data.get(at..at.checked_add(8)?)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map(u64::from_le_bytes)
    };
    let record_at = |at: u64| {
        usize::try_from(at)
            .ok()
            .and_then(|at| data.get(at..at.checked_add(4)?))
            == Some(b"PK\x01\x02")
    };
    let Some(locator) = crate::text::rfind_bytes(data, b"PK\x06\x07") else {
        return Vec::new();
    };
    let pointed = u64_at(locator + 8).and_then(|a| usize::try_from(a).ok());
    let before = locator.checked_sub(56);
    let mut starts = Vec::new();
    for end in [pointed, before].into_iter().flatten() {
        if data.get(end..end.saturating_add(4)) != Some(b"PK\x06\x06") {
            continue;
        }
        let (Some(size), Some(offset)) = (u64_at(end + 40), u64_at(end + 48)) else {
            continue;
        };
        let start = if record_at(offset) {
            Some((offset, 0))
        } else {
            // Shifted by bytes in front, as for the 32-bit record.
            (end as u64)
                .checked_sub(size)
                .filter(|s| record_at(*s))
                .and_then(|s| Some((s, s.checked_sub(offset)?)))
        };
        if let Some(start) = start.filter(|s| !starts.contains(s)) {
            starts.push(start);
        }
    }
    starts
}

/// A member's names other than `name` (as the zip library decoded the
/// central directory's): the directory's raw bytes when they are UTF-8
/// and say something else (an Info-ZIP Unicode Path field overrides
/// them), and the local header's when its bytes differ from the
/// directory's (the same bytes in CP437 are the same name, walkBS S4).
fn other_names(name: &str, central_raw: &[u8], data: &[u8], header_start: u64) -> Vec<String> {
    let mut also: Vec<String> = Vec::new();
    if let Ok(raw) = std::str::from_utf8(central_raw) {
        if raw != name {
            also.push(raw.to_string());
        }
    }
    if let Some(local) = local_name(data, header_start).filter(|l| *l != central_raw) {
        let local = String::from_utf8_lossy(local).into_owned();
        if local != name && !also.contains(&local) {
            also.push(local);
        }
    }
    also
}

/// Whether the local header at `header_start` says data follows it.
fn local_declares_data(data: &[u8], header_start: u64) -> bool {
    RawLocal::at(data, header_start).is_some_and(|h| h.declares_data())
}

/// The name bytes in the local header at `header_start`, if the header
/// is there.
fn local_name(data: &[u8], header_start: u64) -> Option<&[u8]> {
    RawLocal::at(data, header_start)?.name
}

/// The fields of the local header at a central directory's offset for
/// it, as they are: what the central directory's member is compared with
/// (its name, its method, whether it holds data, where it ends). Whether
/// the header holds together as a member of its own is
/// [`LocalHeader::at`]'s question.
struct RawLocal<'a> {
    /// Where it starts in the file.
    start: usize,
    flags: u16,
    method: u16,
    /// The compressed size of its 32-bit field.
    compressed: u32,
    /// Its name, when the name lies within the file.
    name: Option<&'a [u8]>,
    /// Where its data starts, after its name and extra field (clamped to
    /// the file).
    data_start: usize,
}

impl<'a> RawLocal<'a> {
    fn at(data: &'a [u8], header_start: u64) -> Option<RawLocal<'a>> {
        let start = usize::try_from(header_start).ok()?;
        let h = data.get(start..start.checked_add(30)?)?;
        if h[..4] != *b"PK\x03\x04" {
            return None;
        }
        let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
        let (name_len, extra_len) = (usize::from(u16_at(26)), usize::from(u16_at(28)));
        Some(RawLocal {
            start,
            flags: u16_at(6),
            method: u16_at(8),
            compressed: u32::from_le_bytes([h[18], h[19], h[20], h[21]]),
            name: data.get(start + 30..start + 30 + name_len),
            data_start: (start + 30 + name_len + extra_len).min(data.len()),
        })
    }

    /// Whether it says data follows it: a compressed size, a data
    /// descriptor after the data (flag bit 3), or deflate, whose stream
    /// jar inflates to its end whatever the sizes say (walkBV V3: sizes 0,
    /// no descriptor, a deflated EICAR).
    fn declares_data(&self) -> bool {
        self.flags & LocalHeader::DESCRIPTOR != 0 || self.method == 8 || self.compressed != 0
    }
}

/// Where a member the central directory lists lies in `data`, for the
/// walk of the local headers it does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Listed {
    /// Its local header.
    start: usize,
    /// Its data, after the local header's name and extra field.
    data_start: usize,
    /// The end of its data by the central directory's compressed size
    /// (or, stored, the local header's when that is less: what a
    /// streaming reader such as jar reads), clamped to `data`.
    end: usize,
    /// Deflated by its local header: a reader that inflates it stops at
    /// the end of the stream, which may come before `end`.
    deflated: bool,
}

impl Listed {
    fn of(data: &[u8], header_start: u64, compressed: u64) -> Listed {
        let central = usize::try_from(compressed).unwrap_or(usize::MAX);
        let Some(h) = RawLocal::at(data, header_start) else {
            // No local header there: the zip library finds the member
            // damaged, and nothing is left out of the walk for it (its
            // sizes would be a guess).
            let start = usize::try_from(header_start)
                .unwrap_or(usize::MAX)
                .min(data.len());
            return Listed {
                start,
                data_start: start,
                end: start,
                deflated: false,
            };
        };
        // A stored member whose local header gives a smaller size (and no
        // descriptor) ends there for jar, which then reads the next local
        // header (walkBV V2), 0 too (walkCB CB6: a readme.txt of 0 octets
        // whose central size covered an EICAR's local header).
        // Its ZIP64 size when the 32-bit field is all ones (walkCE CE1: a
        // size of 0 written there hid the EICAR again).
        let local = if h.compressed == u32::MAX {
            LocalHeader::at_offset(data, header_start)
                .map(|l| l.compressed)
                .filter(|c| *c != u64::from(u32::MAX))
        } else {
            Some(u64::from(h.compressed))
        };
        let declared = match local {
            Some(local) if h.method == 0 && h.flags & LocalHeader::DESCRIPTOR == 0 => {
                central.min(usize::try_from(local).unwrap_or(usize::MAX))
            }
            _ => central,
        };
        Listed {
            start: h.start,
            data_start: h.data_start,
            end: h.data_start.saturating_add(declared).min(data.len()),
            deflated: h.method == 8,
        }
    }
}

/// Where the raw deflate stream starting at `from` ends (the octet after
/// it), as a reader that inflates it finds; none when it does not end
/// within `data` (damaged, or cut) or the time is up. Nothing inflated is
/// kept: the stream is read to learn its length only.
fn deflate_end(data: &[u8], from: usize, deadline: Instant) -> Option<usize> {
    let mut inflate = flate2::Decompress::new(false);
    let mut scratch = vec![0u8; 32 * 1024];
    loop {
        if Instant::now() >= deadline {
            return None;
        }
        let at = from.saturating_add(usize::try_from(inflate.total_in()).ok()?);
        let input = data.get(at..)?;
        let (before_in, before_out) = (inflate.total_in(), inflate.total_out());
        match inflate.decompress(input, &mut scratch, flate2::FlushDecompress::None) {
            Ok(flate2::Status::StreamEnd) => {
                return from.checked_add(usize::try_from(inflate.total_in()).ok()?);
            }
            Ok(_) if inflate.total_in() != before_in || inflate.total_out() != before_out => {}
            // No progress: the input ran out before the stream's end.
            Ok(_) | Err(_) => return None,
        }
    }
}

/// Local headers that look damaged are tried at most this often in one
/// zip: past it, the walk ends (damaged). Each try reads on from a new
/// place, and bytes made of local headers inside local headers must not
/// cost more than a bounded number of passes.
const MAX_DAMAGED_LOCAL: usize = 64;

/// Reads the members whose local headers (`PK 03 04`) lie outside every
/// member the central directory lists (`listed`): a zip with another zip
/// in front of it (two zips concatenated, walkAJ 2), or an end record that
/// says "no members" hidden after the real one (in its comment). unzip and
/// Python read the archive the last end record describes; 7-Zip reads the
/// first one from its local headers and extracts what the others never
/// show. The scanner reads both. Only a local header that holds together
/// (a known method, a name, its data within the file) counts: the program
/// of a self-extractor in front of its zip may hold the four octets, as
/// any code that looks for them does, and is not a member.
fn unlisted_members(
    data: &[u8],
    mut listed: Vec<Listed>,
    room: usize,
    out: &mut Vec<Member>,
    budget: &mut Budget<'_>,
    deadline: Instant,
) {
    listed.sort_unstable();
    let mut ranges = listed.into_iter().peekable();
    let mut at = 0usize;
    let (mut taken, mut damaged) = (0usize, 0usize);
    while let Some(p) = find(data, b"PK\x03\x04", at) {
        // Inside a listed member (its header, or a zip stored in it): the
        // member itself is read and unpacked as such.
        while ranges.peek().is_some_and(|l| l.end <= p) {
            ranges.next();
        }
        if let Some(l) = ranges.peek_mut() {
            if l.start <= p {
                // A deflated member's stream may end before the size the
                // central directory gives it: what follows is read by jar
                // as the next local header (walkBV V2: an EICAR behind a
                // readme.txt whose compressed size covered both). The
                // stream is measured only when a header lies in the rest.
                if l.deflated {
                    if p < l.data_start {
                        at = l.data_start;
                        continue;
                    }
                    if LocalHeader::at(data, p).is_none() {
                        at = p + 4;
                        continue;
                    }
                    let stream_end = deflate_end(data, l.data_start, deadline).unwrap_or(l.end);
                    l.end = stream_end.clamp(l.data_start, l.end);
                    l.deflated = false;
                }
                if p < l.end {
                    at = l.end.max(p + 1);
                    continue;
                }
            }
        }
        at = p + 4;
        let Some(local) = LocalHeader::at(data, p) else {
            continue;
        };
        if taken >= room {
            out.push(Member::Damaged {
                problem: format!("more than {MAX_MEMBERS} members"),
            });
            return;
        }
        taken += 1;
        let before = out.len();
        match read_local(data, &local, out, budget, deadline) {
            (Taken::Whole, end) => {
                at = end.max(at);
                drop_empty_directory(out, before);
            }
            (Taken::Damaged, _) => {
                damaged += 1;
                if damaged >= MAX_DAMAGED_LOCAL {
                    out.push(Member::Damaged {
                        problem: format!(
                            "more than {MAX_DAMAGED_LOCAL} damaged local headers the central directory does not list"
                        ),
                    });
                    return;
                }
            }
            (Taken::Stop, _) => return,
        }
    }
}

/// Reads again, by its local header at `header_start`, the member whose
/// reading by the central directory's sizes was damaged (from `at` in
/// `out`, where that reading left its bytes and its report): when the
/// local header's reading ends whole, it takes the first one's place.
fn reread_local(
    data: &[u8],
    header_start: u64,
    at: usize,
    out: &mut Vec<Member>,
    budget: &mut Budget<'_>,
    deadline: Instant,
) -> Taken {
    let local = LocalHeader::at_offset(data, header_start);
    let Some(local) = local else {
        return Taken::Damaged;
    };
    let mut again = Vec::new();
    match read_local(data, &local, &mut again, budget, deadline) {
        (Taken::Whole, _) if matches!(again.as_slice(), [Member::File { .. }]) => {
            // The name stays the central directory's; the local one is
            // among its other names already.
            if let (Some(Member::File { data: d, .. }), Some(Member::File { data: first, .. })) =
                (again.pop(), out.get_mut(at))
            {
                *first = d;
                out.truncate(at + 1);
                return Taken::Whole;
            }
            Taken::Damaged
        }
        (Taken::Stop, _) => Taken::Stop,
        _ => Taken::Damaged,
    }
}

/// Drops the member read at `at` (the last in `out`) when it is an empty
/// directory entry: jar and Python's writers make them with an empty
/// deflate stream (2 octets) or a data descriptor, which are read as
/// files since a "directory" may hold data (walkBS S8); one with nothing
/// in it is no file (walkBV and walkBX V5: `META-INF/` was an object).
fn drop_empty_directory(out: &mut Vec<Member>, at: usize) {
    if out.len() == at + 1
        && matches!(out.last(), Some(Member::File { name, data, .. })
            if data.is_empty() && (name.ends_with('/') || name.ends_with('\\')))
    {
        out.pop();
    }
}

/// The method code (0 stored, 8 deflated, ...) of the local header at
/// `header_start`, if one is there.
fn local_method(data: &[u8], header_start: u64) -> Option<u16> {
    Some(RawLocal::at(data, header_start)?.method)
}

/// The code of a zip method as headers write it, for the methods this
/// build reads (the others are not compared: they are not unpacked).
fn method_code(method: zip::CompressionMethod) -> Option<u16> {
    match method {
        zip::CompressionMethod::Stored => Some(0),
        zip::CompressionMethod::Deflated => Some(8),
        _ => None,
    }
}

/// Reads the member of the local header at `header_start` as a second
/// reading of the member `name` (its bytes as unzip and jar see them),
/// appended to `out` under that name.
fn read_local_beside(
    data: &[u8],
    header_start: u64,
    name: String,
    out: &mut Vec<Member>,
    budget: &mut Budget<'_>,
    deadline: Instant,
) -> Taken {
    let local = LocalHeader::at_offset(data, header_start);
    let Some(mut local) = local else {
        return Taken::Whole;
    };
    local.name = name;
    let (taken, _) = read_local(data, &local, out, budget, deadline);
    taken
}

/// The first place of `needle` in `data` at or after `from`.
fn find(data: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    crate::text::find_bytes(data.get(from..)?, needle).map(|i| i + from)
}

/// A zip local file header that holds together.
#[derive(Debug)]
struct LocalHeader {
    name: String,
    flags: u16,
    method: u16,
    compressed: u64,
    size: u64,
    /// Where its data starts in the file.
    data_start: usize,
}

impl LocalHeader {
    /// Bit 0 of the flags: encrypted.
    const ENCRYPTED: u16 = 0x0001;
    /// Bit 3: the sizes follow the data (a data descriptor).
    const DESCRIPTOR: u16 = 0x0008;

    /// The local header at a central directory's offset for it.
    fn at_offset(data: &[u8], header_start: u64) -> Option<LocalHeader> {
        LocalHeader::at(data, usize::try_from(header_start).ok()?)
    }

    /// The local header at `at`, when it is one: a method zip knows, a
    /// version zip has used, a name, and its data within `data`.
    fn at(data: &[u8], at: usize) -> Option<LocalHeader> {
        let h = data.get(at..at.checked_add(30)?)?;
        let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        if &h[..4] != b"PK\x03\x04" {
            return None;
        }
        let (flags, method) = (u16_at(6), u16_at(8));
        // jar reads stored and deflated members whatever version they say
        // they need (walkBV V1: 64 hid an EICAR); for other methods, a
        // version zip has not used tells a header from code that holds
        // the four octets.
        let jar_reads = method == 0 || method == 8;
        if !jar_reads && (u16_at(4) & 0xff) > 63 {
            return None;
        }
        // Stored, shrink, reduce, implode, deflate, deflate64, bzip2,
        // LZMA, zstd, MP3, xz, JPEG, WavPack, PPMd, AES.
        const KNOWN: [u16; 18] = [
            0, 1, 2, 3, 4, 5, 6, 8, 9, 12, 14, 18, 19, 93, 95, 96, 97, 98,
        ];
        if !KNOWN.contains(&method) && method != 99 {
            return None;
        }
        let (name_len, extra_len) = (usize::from(u16_at(26)), usize::from(u16_at(28)));
        let name_at = at + 30;
        let extra_at = name_at + name_len;
        let data_start = extra_at + extra_len;
        let raw_name = data.get(name_at..extra_at)?;
        let extra = data.get(extra_at..data_start)?;
        if raw_name.is_empty() || raw_name.contains(&0) {
            return None;
        }
        let (mut compressed, mut size) = (u64::from(u32_at(18)), u64::from(u32_at(22)));
        let mut name = String::from_utf8_lossy(raw_name).into_owned();
        let mut fields = extra;
        while let [a, b, c, d, rest @ ..] = fields {
            let id = u16::from_le_bytes([*a, *b]);
            let len = usize::from(u16::from_le_bytes([*c, *d]));
            let Some(body) = rest.get(..len) else { break };
            let word = |i: usize| {
                body.get(i..i + 8)
                    .and_then(|w| <[u8; 8]>::try_from(w).ok())
                    .map(u64::from_le_bytes)
            };
            match id {
                // Zip64: the sizes the 32-bit fields could not hold, the
                // uncompressed first.
                0x0001 => {
                    let mut next = 0;
                    if size == u64::from(u32::MAX) {
                        size = word(next).unwrap_or(size);
                        next += 8;
                    }
                    if compressed == u64::from(u32::MAX) {
                        compressed = word(next).unwrap_or(compressed);
                    }
                }
                // Info-ZIP Unicode Path: the name unzip and 7-Zip show.
                0x7075 if body.len() > 5 && body[0] == 1 => {
                    name = String::from_utf8_lossy(&body[5..]).into_owned();
                }
                _ => {}
            }
            fields = &rest[len..];
        }
        // Deflate ends itself: jar inflates to the stream's end whatever
        // size the header gives (walkBV V3).
        let room = (data.len() - data_start) as u64;
        if flags & Self::DESCRIPTOR == 0 && compressed > room && method != 8 {
            return None;
        }
        Some(LocalHeader {
            name,
            flags,
            method,
            compressed,
            size,
            data_start,
        })
    }
}

/// Reads the member of local header `local` into `out`; with how it ended,
/// where its data ends (as far as known).
fn read_local(
    data: &[u8],
    local: &LocalHeader,
    out: &mut Vec<Member>,
    budget: &mut Budget<'_>,
    deadline: Instant,
) -> (Taken, usize) {
    let name = local.name.clone();
    let descriptor = local.flags & LocalHeader::DESCRIPTOR != 0;
    let declared_end = local
        .data_start
        .saturating_add(usize::try_from(local.compressed).unwrap_or(usize::MAX))
        .min(data.len());
    if local.flags & LocalHeader::ENCRYPTED != 0 || local.method == 99 {
        out.push(Member::Encrypted {
            name,
            also: Vec::new(),
        });
        return (Taken::Whole, declared_end);
    }
    match local.method {
        0 => {
            let end = if descriptor && local.compressed == 0 {
                // The size follows the data: the first data descriptor
                // (`PK 07 08`) whose compressed size is the distance to it.
                let mut from = local.data_start;
                loop {
                    if Instant::now() >= deadline {
                        return (Taken::Stop, local.data_start);
                    }
                    let Some(q) = find(data, b"PK\x07\x08", from) else {
                        out.push(Member::Damaged {
                            problem: format!("{name}: no data descriptor ends this stored member"),
                        });
                        return (Taken::Damaged, local.data_start);
                    };
                    let told = data
                        .get(q + 8..q + 12)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
                    if told == Some(q - local.data_start) {
                        break q;
                    }
                    from = q + 1;
                }
            } else {
                declared_end
            };
            let mut body = &data[local.data_start..end];
            let taken = take_member(out, name, &mut body, local.size, budget, deadline);
            (taken, end)
        }
        8 => {
            // Deflate ends itself: read on to the end of the stream, as
            // jar does whatever size the header gives (walkBV V2, V3),
            // and learn where it ended: the next header is looked for
            // from there.
            let mut inflate = flate2::bufread::DeflateDecoder::new(&data[local.data_start..]);
            let taken = take_member(out, name, &mut inflate, local.size, budget, deadline);
            let used = usize::try_from(inflate.total_in()).unwrap_or(usize::MAX);
            (taken, local.data_start.saturating_add(used).min(data.len()))
        }
        m => {
            let method = match m {
                1 => "shrink".to_string(),
                2..=5 => "reduce".to_string(),
                6 => "implode".to_string(),
                9 => "deflate64".to_string(),
                12 => "bzip2".to_string(),
                14 => "lzma".to_string(),
                93 => "zstd".to_string(),
                95 => "xz".to_string(),
                98 => "ppmd".to_string(),
                m => format!("method {m}"),
            };
            out.push(Member::NotUnpacked {
                name,
                method,
                also: Vec::new(),
            });
            (Taken::Whole, declared_end)
        }
    }
}

/// The name of a zip compression method this build does not unpack
/// (None: stored or deflate, or not known).
fn unsupported_method(method: Option<zip::CompressionMethod>) -> Option<String> {
    let method = method?;
    (!zip::SUPPORTED_COMPRESSION_METHODS.contains(&method))
        .then(|| method.to_string().to_lowercase())
}

/// A zip whose central directory the zip library does not read: its
/// end record lies (entry counts that disagree, 0xFFFF without ZIP64, a
/// directory size too small), or it has none (a transfer cut before it,
/// a streamed zip). Python and 7-Zip read such directories, and jar and
/// 7-Zip the local headers (walkBZ Z2, Z5: an EICAR they extract was
/// `av/error` with nothing read): each record's member is read by its
/// local header, then the local headers no record lists, then `why` is
/// said (the part stays `av/error`).
fn zip_members_by_hand(
    data: &[u8],
    budget: &mut Budget<'_>,
    deadline: Instant,
    why: String,
) -> Vec<Member> {
    let mut out = Vec::new();
    let mut records = central_directory_start(data)
        .map(|(at, base)| central_records(data, at, base))
        .unwrap_or_default();
    for (at, base) in zip64_directory_starts(data) {
        if records.len() <= MAX_MEMBERS {
            records.extend(central_records(data, at, base));
        }
    }
    let mut listed = Vec::new();
    let mut read: std::collections::HashSet<u64> = std::collections::HashSet::new();
    let mut damaged = 0usize;
    for r in records.iter().take(MAX_MEMBERS) {
        let Some(at) = r.local else { continue };
        if !read.insert(at) || damaged >= MAX_DAMAGED_LOCAL {
            continue;
        }
        listed.push(Listed::of(data, at, r.compressed));
        let Some(mut local) = LocalHeader::at_offset(data, at) else {
            continue;
        };
        // Under its central name, the one Python and 7-Zip extract.
        local.name = String::from_utf8_lossy(r.name).into_owned();
        let before = out.len();
        match read_local(data, &local, &mut out, budget, deadline).0 {
            Taken::Stop => {
                out.push(Member::Damaged { problem: why });
                return out;
            }
            Taken::Damaged => damaged += 1,
            Taken::Whole => {}
        }
        drop_empty_directory(&mut out, before);
    }
    if records.len() > MAX_MEMBERS {
        out.push(Member::Damaged {
            problem: format!("more than {MAX_MEMBERS} members"),
        });
    }
    let room = MAX_MEMBERS.saturating_sub(records.len());
    unlisted_members(data, listed, room, &mut out, budget, deadline);
    let how = if records.is_empty() {
        "its members read from their local headers"
    } else {
        "its members read from its central records and local headers"
    };
    out.push(Member::Damaged {
        problem: format!("{why}; {how}"),
    });
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
    let _ = take_member(&mut out, inner, &mut gz, size, budget, deadline);
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
        if take_member(&mut out, name, &mut entry, size, budget, deadline) != Taken::Whole {
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
            matches!(&m[..], [Member::File { name, data, .. }] if name == "eicar.com" && data == b"the member"),
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

    /// walkBR N7: a streaming reader saves a member under its local
    /// header's name; where it differs from the central directory's, the
    /// member carries both.
    #[test]
    fn a_local_header_name_that_differs_is_kept_beside_the_other() {
        let pool = MemoryPool::unbounded();
        let mut z = zip_of(&[("aaaa.txt", b"MZ program")]);
        assert_eq!(&z[30..38], b"aaaa.txt");
        z[30..38].copy_from_slice(b"evil.bat");
        let mut budget = Budget::new(10_000, &pool);
        let m = unpack(Format::Zip, "z.zip", &z, &mut budget, far());
        assert!(
            matches!(&m[..], [Member::File { name, also, .. }]
                if name == "aaaa.txt" && also == &["evil.bat"]),
            "{m:?}"
        );
        let same = zip_of(&[("same.txt", b"x")]);
        let m = unpack(Format::Zip, "z.zip", &same, &mut budget, far());
        assert!(
            matches!(&m[..], [Member::File { also, .. }] if also.is_empty()),
            "{m:?}"
        );
    }

    #[test]
    fn unpacks_zip_members_within_budget() {
        let pool = MemoryPool::unbounded();
        let z = zip_of(&[("a.txt", b"hello"), ("b.bin", &[7u8; 1000])]);
        let mut budget = Budget::new(10_000, &pool);
        let m = unpack(Format::Zip, "z.zip", &z, &mut budget, far());
        assert!(
            matches!(&m[0], Member::File { name, data, .. } if name == "a.txt" && data == b"hello")
        );
        assert!(
            matches!(&m[1], Member::File { name, data, .. } if name == "b.bin" && data.len() == 1000)
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
    fn a_member_with_a_lying_size_stops_only_itself() {
        // walkAJ 6: a.txt's central entry declares 1 byte. It is read first
        // (smallest first), fails, and eicar.com beside it was never read.
        // Its local header is right: it is read by it, as unzip and jar
        // read it (walkBV V4).
        let hello = b"hello".repeat(10);
        let mut z = zip_of(&[("a.txt", &hello), ("eicar.com", b"the virus")]);
        let central = z.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        z[central + 20..central + 24].copy_from_slice(&1u32.to_le_bytes());
        let pool = MemoryPool::unbounded();
        let mut budget = Budget::new(1 << 20, &pool);
        let m = unpack(Format::Zip, "tiny_lie.zip", &z, &mut budget, far());
        assert_eq!(
            files(&m),
            [("eicar.com", b"the virus".as_slice()), ("a.txt", &hello)],
            "{m:?}"
        );
        assert!(
            !m.iter().any(|x| matches!(x, Member::Damaged { .. })),
            "{m:?}"
        );
        // Its own bytes damaged (the deflate stream): it stops itself only.
        let data_at = 30 + "a.txt".len();
        z[data_at..data_at + 4].copy_from_slice(&[0xff; 4]);
        let mut budget = Budget::new(1 << 20, &pool);
        let m = unpack(Format::Zip, "damaged.zip", &z, &mut budget, far());
        assert!(
            m.iter().any(
                |x| matches!(x, Member::File { name, data, .. } if name == "eicar.com" && data == b"the virus")
            ),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|x| matches!(x, Member::Damaged { problem } if problem.starts_with("a.txt:"))),
            "{m:?}"
        );
    }

    /// walkBX V5: an empty directory entry written as a file (an empty
    /// deflate stream, as jar writes `META-INF/`) is no member; one that
    /// holds data still is.
    #[test]
    fn an_empty_directory_entry_is_no_member() {
        let z = zip_of(&[("META-INF/", b""), ("aaaa/", b"data"), ("a.txt", b"text")]);
        // Its central record says 2 octets (the empty stream): read.
        let cd = z.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        assert_ne!(&z[cd + 20..cd + 24], &[0, 0, 0, 0]);
        let pool = MemoryPool::unbounded();
        let mut budget = Budget::new(1 << 20, &pool);
        let m = unpack(Format::Zip, "t.jar", &z, &mut budget, far());
        assert_eq!(
            files(&m),
            [("aaaa/", b"data".as_slice()), ("a.txt", b"text")],
            "{m:?}"
        );
    }

    /// walkBX N2: past MAX_MEMBERS, said once.
    #[test]
    fn too_many_members_is_said_once() {
        let names: Vec<String> = (0..=MAX_MEMBERS).map(|i| format!("{i}")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
        let z = zip_of(&files);
        let pool = MemoryPool::unbounded();
        let mut budget = Budget::new(1 << 20, &pool);
        let m = unpack(Format::Zip, "many.zip", &z, &mut budget, far());
        let said = m
            .iter()
            .filter(
                |x| matches!(x, Member::Damaged { problem } if problem.starts_with("more than")),
            )
            .count();
        assert_eq!(said, 1, "{:?}", &m[m.len().saturating_sub(3)..]);
    }

    /// The names and bytes of the files among `m`.
    fn files(m: &[Member]) -> Vec<(&str, &[u8])> {
        m.iter()
            .filter_map(|x| match x {
                Member::File { name, data, .. } => Some((name.as_str(), data.as_slice())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_zip_in_front_of_another_zip_is_read_too() {
        // walkAJ 2: unzip reads the last end record (readme.txt), 7-Zip
        // the first archive from its local headers (eicar.com).
        let first = zip_of(&[("eicar.com", &b"the virus ".repeat(50))]);
        let second = zip_of(&[("readme.txt", &b"hello".repeat(100))]);
        let both = [first.as_slice(), &second].concat();
        let pool = MemoryPool::unbounded();
        let mut budget = Budget::new(1 << 20, &pool);
        let m = unpack(Format::Zip, "c.zip", &both, &mut budget, far());
        let virus = b"the virus ".repeat(50);
        let hello = b"hello".repeat(100);
        assert_eq!(
            files(&m),
            [
                ("readme.txt", hello.as_slice()),
                ("eicar.com", virus.as_slice())
            ],
            "{m:?}"
        );
        assert!(
            !m.iter().any(|x| matches!(x, Member::Damaged { .. })),
            "{m:?}"
        );
    }

    #[test]
    fn an_empty_end_record_hidden_in_the_comment_does_not_hide_the_members() {
        let mut z = zip_of(&[("eicar.com", b"the virus")]);
        let eocd = z.windows(4).rposition(|w| w == b"PK\x05\x06").unwrap();
        let fake = [b"PK\x05\x06".as_slice(), &[0u8; 18]].concat();
        z[eocd + 20..eocd + 22].copy_from_slice(&(fake.len() as u16).to_le_bytes());
        z.extend_from_slice(&fake);
        let pool = MemoryPool::unbounded();
        let mut budget = Budget::new(1 << 20, &pool);
        let m = unpack(Format::Zip, "f.zip", &z, &mut budget, far());
        assert_eq!(files(&m), [("eicar.com", b"the virus".as_slice())], "{m:?}");
    }

    #[test]
    fn a_self_extractor_and_a_stored_zip_are_read_once_and_clean() {
        // A program in front that holds the signature (as code that looks
        // for it does) is no member; nor are the local headers of a zip
        // stored inside a member: that member is unpacked as a zip.
        let inner = zip_of(&[("inner.txt", b"inner")]);
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("inner.zip", stored).unwrap();
        w.write_all(&inner).unwrap();
        let z = w.finish().unwrap().into_inner();
        let stub =
            b"MZ\x90\0 cmp eax, PK\x03\x04 \x01\x02\x03 jne next; this program unpacks the zip"
                .to_vec();
        let sfx = [stub.as_slice(), &z].concat();
        assert_eq!(detect(&sfx), Some(Format::Zip));
        let pool = MemoryPool::unbounded();
        let mut budget = Budget::new(1 << 20, &pool);
        let m = unpack(Format::Zip, "sfx.exe", &sfx, &mut budget, far());
        assert_eq!(files(&m), [("inner.zip", inner.as_slice())], "{m:?}");
    }

    #[test]
    fn binhex_and_yenc_texts_give_their_files() {
        // walkAJ 5: both were `av/clean` with the EICAR inside.
        let eicar = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
        let hqx = b"look:\n(This file must be converted with BinHex 4.0)\n\n\
:\"@8ZBfpY!&4&@&4dG(Kd!!!!!!\"%!!!!!*VT@$92)9!P3%&3@c4F8&TB063S8&i\n\
T0d0$+6Gp*%9*3d&5,90838j%39*%,8&19%P@59*98be84908,8C*6%8K*%JV5#T\n\
4%3!!:\n";
        assert_eq!(detect(hqx), Some(Format::BinHex));
        let pool = MemoryPool::unbounded();
        let mut budget = Budget::new(1 << 20, &pool);
        let m = unpack(Format::BinHex, "e.hqx", hqx, &mut budget, far());
        assert_eq!(files(&m), [("e.com", eicar.as_slice())], "{m:?}");
        assert_eq!(m.len(), 1, "{m:?}");
        // yEnc; a uuencoded file beside it in the same text is still
        // found.
        let y = [
            b"hi\n".as_slice(),
            &yenc::tests::encode("e.com", eicar),
            b"begin 644 u.txt\n#86)C\n`\nend\n",
        ]
        .concat();
        assert_eq!(detect(&y), Some(Format::Yenc));
        let m = unpack(Format::Yenc, "part 2", &y, &mut budget, far());
        assert_eq!(
            files(&m),
            [("e.com", eicar.as_slice()), ("u.txt", b"abc".as_slice())],
            "{m:?}"
        );
        // Declared BinHex but none found: the caller says not unpacked.
        assert!(binhex_not_found("application/mac-binhex40", b"garbage"));
        assert!(!binhex_not_found("application/mac-binhex40", hqx));
        assert!(!binhex_not_found("text/plain", b"garbage"));
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
        let Member::File { name, data, .. } = &m[0] else {
            panic!("{m:?}")
        };
        assert_eq!(name, "x.tar");
        let inner = unpack(Format::Tar, name, data, &mut budget, far());
        assert!(
            matches!(&inner[0], Member::File { name, data, .. } if name == "dir/file.txt" && data == b"data")
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
                |x| matches!(x, Member::File { name, data, .. } if name == "tool.com" && data == b"the program")
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
            matches!(&members[0], Member::NotUnpacked { name, method, .. } if name == "a.txt" && method == "bzip2"),
            "{members:?}"
        );
        assert!(
            matches!(&members[1], Member::File { name, data, .. } if name == "b.txt" && data == b"world"),
            "{members:?}"
        );
    }
}
