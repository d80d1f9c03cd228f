//! The whole scan step in process, with the built-in default bases: every
//! form of the EICAR test file, archives, protection, damage, limits and
//! the part actions. The EICAR string is put together at run time so that
//! the source does not trip other scanners.

use super::*;
use crate::config::Action;
use crate::policy::verdict::{scan_message, ScanOutcome};
use std::io::Write;

fn eicar() -> Vec<u8> {
    let head = ["X5O!P%@AP[4", "\\PZX54(P^)7CC)7}$"].concat();
    let tail = ["EICAR-STANDARD-", "ANTIVIRUS-TEST-FILE!$H+H*"].concat();
    [head, tail].concat().into_bytes()
}

fn rules() -> yara_x::Rules {
    let dir = tempfile::tempdir().unwrap();
    let av = dir.path().join("av");
    assert!(crate::check::bases::install_default(&av).unwrap());
    crate::check::bases::compile(&av).unwrap().0
}

fn policy() -> Policy {
    crate::config::parse("", "t.toml").unwrap().policy
}

fn run(rules: &yara_x::Rules, policy: &Policy, msg: &[u8]) -> ScanOutcome {
    let mut scanner = yara_x::Scanner::new(rules);
    scan_message(
        Some(&mut scanner),
        None,
        msg,
        policy,
        Duration::from_secs(30),
    )
}

/// Base64 in lines of 76 characters, as mail carries it.
fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    let mut s = String::new();
    for (n, line) in data.chunks(57).enumerate() {
        if n > 0 {
            s.push_str("\r\n");
        }
        s.push_str(&base64::engine::general_purpose::STANDARD.encode(line));
    }
    s
}

fn with_attachment(name: &str, ctype: &str, data: &[u8]) -> Vec<u8> {
    format!(
        "From: a@example.com\r\nTo: b@example.com\r\nSubject: t\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n\
Hello\r\n--XX\r\nContent-Type: {ctype}; name=\"{name}\"\r\nContent-Disposition: attachment; \
filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--XX--\r\n",
        b64(data)
    )
    .into_bytes()
}

fn zip_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(name, zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap().into_inner()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn tar_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, name, data).unwrap();
    t.into_inner().unwrap()
}

fn qp(data: &[u8]) -> String {
    data.iter()
        .map(|&b| match b {
            b'=' | b'$' | b'@' => format!("={b:02X}"),
            _ => (b as char).to_string(),
        })
        .collect()
}

#[test]
fn eicar_is_found_in_every_form() {
    let rules = rules();
    let p = policy();
    let e = eicar();
    let forms: Vec<(&str, Vec<u8>)> = vec![
        ("plain body", [b"Subject: t\r\n\r\n".as_slice(), &e, b"\r\n"].concat()),
        ("base64 attachment", with_attachment("eicar.com", "application/octet-stream", &e)),
        (
            "quoted-printable",
            format!(
                "Subject: t\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n",
                qp(&e)
            )
            .into_bytes(),
        ),
        (
            "uuencoded",
            format!(
                "Subject: t\r\n\r\nSee the file:\r\n\r\n{}\r\n",
                super::unpack::uuencode::encode("eicar.com", &e).replace('\n', "\r\n")
            )
            .into_bytes(),
        ),
        (
            "x-uuencode part",
            format!(
                "Subject: t\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream; \
name=\"eicar.com\"\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n{}",
                super::unpack::uuencode::encode("eicar.com", &e).replace('\n', "\r\n")
            )
            .into_bytes(),
        ),
        ("multipart without its closing delimiter", {
            let mut m = with_attachment("eicar.com", "application/octet-stream", &e);
            m.truncate(m.len() - b"--XX--\r\n".len());
            m
        }),
        ("zip", with_attachment("e.zip", "application/zip", &zip_of("eicar.com", &e))),
        (
            "zip in zip",
            with_attachment(
                "outer.zip",
                "application/zip",
                &zip_of("inner.zip", &zip_of("eicar.com", &e)),
            ),
        ),
        ("gzip", with_attachment("eicar.com.gz", "application/gzip", &gzip(&e))),
        ("tar", with_attachment("e.tar", "application/x-tar", &tar_of("eicar.com", &e))),
        (
            "tar.gz",
            with_attachment("e.tgz", "application/gzip", &gzip(&tar_of("x/eicar.com", &e))),
        ),
        ("mail file in a zip", {
            let mail = with_attachment("eicar.com", "application/octet-stream", &e);
            with_attachment("mails.zip", "application/zip", &zip_of("fwd.eml", &mail))
        }),
        (
            "mail file attached as octet-stream",
            with_attachment(
                "fwd.eml",
                "application/octet-stream",
                &with_attachment("eicar.com", "application/octet-stream", &e),
            ),
        ),
        (
            "forwarded message",
            format!(
                "Subject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"F\"\r\n\r\n\
--F\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--F\r\nContent-Type: message/rfc822\r\n\r\n{}\r\n--F--\r\n",
                String::from_utf8(with_attachment("eicar.com", "application/octet-stream", &e)).unwrap()
            )
            .into_bytes(),
        ),
    ];
    for (form, msg) in forms {
        let out = run(&rules, &p, &msg);
        assert_eq!(
            out.report.av,
            AvStatus::Infected,
            "{form}: {:?}",
            out.findings
        );
        assert_eq!(out.report.viruses, ["EICAR_Test_File"], "{form}");
        let cleaned = out
            .rewritten
            .unwrap_or_else(|| panic!("{form}: not rewritten"));
        // Removed: the cleaned message scans clean (no EICAR in any form).
        let again = run(&rules, &p, &cleaned);
        assert_eq!(
            again.report.av,
            AvStatus::Clean,
            "{form}: {:?}",
            again.findings
        );
    }
}

#[test]
fn a_clean_message_is_left_alone_with_a_header() {
    let rules = rules();
    let msg = with_attachment("report.pdf", "application/pdf", b"%PDF-1.4 harmless");
    let out = run(&rules, &policy(), &msg);
    assert_eq!(out.report.av, AvStatus::Clean, "{:?}", out.findings);
    assert!(out.rewritten.is_none());
    // The AV verdict first, then the spam check's (it runs by default).
    let header = out.header.unwrap_or_default();
    assert!(
        header.starts_with("X-Mailward-AV: clean; bases=none\r\nX-Mailward-Spam: as/clean; score="),
        "{header}"
    );
}

#[test]
fn suspicious_names_and_disguised_executables() {
    let rules = rules();
    let mut p = policy();
    p.action_suspicious = Action::Placeholder;
    let out = run(
        &rules,
        &p,
        &with_attachment("invoice.pdf.exe", "application/octet-stream", b"x"),
    );
    assert_eq!(out.report.av, AvStatus::Suspicious);
    assert_eq!(out.report.viruses, ["Suspicious_Double_Extension"]);
    let text = String::from_utf8(out.rewritten.unwrap()).unwrap();
    assert!(
        text.contains("Mailward replaced \"invoice.pdf.exe\""),
        "{text}"
    );
    let out = run(
        &rules,
        &p,
        &with_attachment("photo.jpg", "image/jpeg", b"MZ\x90\x00rest"),
    );
    assert_eq!(out.report.viruses, ["Suspicious_Disguised_Executable"]);
}

#[test]
fn protected_damaged_and_bounded() {
    let rules = rules();
    let p = policy();
    // An entry flagged encrypted (general purpose bit 0, local and central).
    let mut z = zip_of("secret.doc", b"hidden");
    z[6] |= 1;
    let cd = z.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    z[cd + 8] |= 1;
    let out = run(&rules, &p, &with_attachment("s.zip", "application/zip", &z));
    assert_eq!(out.report.av, AvStatus::Protected, "{:?}", out.findings);
    // Truncated: the first member is still scanned.
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("eicar.com", zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(&eicar()).unwrap();
    w.start_file("big.bin", zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(&vec![b'y'; 20_000]).unwrap();
    let z = w.finish().unwrap().into_inner();
    let cut = &z[..z.len() - 200];
    let out = run(
        &rules,
        &p,
        &with_attachment("t.zip", "application/zip", cut),
    );
    assert_eq!(
        out.report.viruses,
        ["EICAR_Test_File"],
        "{:?}",
        out.findings
    );
    assert!(out
        .findings
        .iter()
        .any(|f| f.kind == Kind::Error && f.name.contains("damaged zip")));
    // Over max_unpacked_size: av/error.
    let mut small = p.clone();
    small.max_unpacked_size = crate::config::ByteSize(1000);
    let out = run(
        &rules,
        &small,
        &with_attachment("z.zip", "application/zip", &zip_of("zeros", &[0u8; 50_000])),
    );
    assert_eq!(out.report.av, AvStatus::Error, "{:?}", out.findings);
    // Deeper than max_scan_depth: av/error.
    let mut shallow = p.clone();
    shallow.max_scan_depth = 1;
    let nested = zip_of("a.zip", &zip_of("b.txt", b"x"));
    let out = run(
        &rules,
        &shallow,
        &with_attachment("n.zip", "application/zip", &nested),
    );
    assert_eq!(out.report.av, AvStatus::Error, "{:?}", out.findings);
}

#[test]
fn broken_mime_is_scanned_as_far_as_it_goes() {
    let rules = rules();
    let e = eicar();
    // No closing boundary, and a part with broken base64 before the virus.
    let msg = format!(
        "Subject: t\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n\
--B\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64***\r\n\
--B\r\nContent-Type: text/plain\r\n\r\n{}\r\n",
        String::from_utf8(e).unwrap()
    );
    let out = run(&rules, &policy(), msg.as_bytes());
    assert_eq!(
        out.report.viruses,
        ["EICAR_Test_File"],
        "{:?}",
        out.findings
    );
}

#[test]
fn filtered_parts_and_no_rules() {
    let rules = rules();
    let mut p = policy();
    p.include_by_name = vec![crate::config::Pattern::new("*.exe")];
    p.exclude_by_name = vec![crate::config::Pattern::new("setup-*.exe")];
    let out = run(
        &rules,
        &p,
        &with_attachment("tool.exe", "application/octet-stream", b"x"),
    );
    assert_eq!(out.report.av, AvStatus::Filtered);
    assert_eq!(out.report.filter_rules, ["name:*.exe"]);
    let out = run(
        &rules,
        &p,
        &with_attachment("setup-1.exe", "application/octet-stream", b"x"),
    );
    assert_eq!(out.report.av, AvStatus::Clean);
    // Without rules nothing passes as clean.
    let out = scan_message(
        None,
        None,
        b"Subject: t\r\n\r\nhi\r\n",
        &p,
        Duration::from_secs(5),
    );
    assert_eq!(out.report.av, AvStatus::Error);
}

/// walkBS S7 and S8: an encrypted member's name is filtered (the names of
/// a zip are in the clear), and an entry the central directory calls a
/// directory but that holds data is read (jar extracts it).
#[test]
fn encrypted_members_are_named_and_directories_with_data_are_read() {
    let rules = rules();
    let mut p = policy();
    p.include_by_name = vec![crate::config::Pattern::new("*.exe")];
    let mut z = zip_of("invoice.exe", b"hidden");
    z[6] |= 1;
    let cd = z.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    z[cd + 8] |= 1;
    let out = run(&rules, &p, &with_attachment("s.zip", "application/zip", &z));
    // Its worst finding stays av/protected (the part's action is that
    // one's), with the name's finding beside it.
    assert_eq!(out.report.av, AvStatus::Protected, "{:?}", out.findings);
    assert_eq!(out.report.filter_rules, ["name:*.exe"]);
    // Under its local header's name too (walkBU U4).
    let mut z = zip_of("invoice.pdf", b"hidden");
    z[6] |= 1;
    let cd = z.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    z[cd + 8] |= 1;
    assert_eq!(&z[30..41], b"invoice.pdf");
    z[30..41].copy_from_slice(b"invoice.exe");
    let out = run(&rules, &p, &with_attachment("s.zip", "application/zip", &z));
    assert_eq!(
        out.report.filter_rules,
        ["name:*.exe"],
        "{:?}",
        out.findings
    );
    // A directory entry (its name ends in /) with the EICAR file as data.
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("aaaa/", zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(&eicar()).unwrap();
    let z = w.finish().unwrap().into_inner();
    let out = run(
        &rules,
        &policy(),
        &with_attachment("d.zip", "application/zip", &z),
    );
    assert_eq!(out.report.av, AvStatus::Infected, "{:?}", out.findings);
    // The same with the central directory saying 0 octets (walkBU U2):
    // jar reads the local header.
    let mut z = z;
    let cd = z.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    z[cd + 20..cd + 28].copy_from_slice(&[0; 8]);
    let out = run(
        &rules,
        &policy(),
        &with_attachment("e.zip", "application/zip", &z),
    );
    assert_eq!(out.report.av, AvStatus::Infected, "{:?}", out.findings);
}

/// walkBS S3: the central directory's own name under an Info-ZIP Unicode
/// Path field (0x7075), which jar and java.util.zip save under, is
/// matched too.
#[test]
fn a_central_name_under_a_unicode_path_field_is_matched() {
    let rules = rules();
    let mut p = policy();
    p.include_by_name = vec![crate::config::Pattern::new("*.bat")];
    // One stored member: local header and data, then the central header
    // named evil.bat with a 0x7075 field saying aaaa.txt.
    let data = b"@echo off";
    let crc = crc32fast::hash(data);
    let local_name = b"aaaa.txt";
    let mut z = Vec::new();
    z.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(local_name.len() as u16).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(local_name);
    z.extend_from_slice(data);
    let cd_at = z.len();
    let raw = b"evil.bat";
    let mut extra = vec![0x75, 0x70];
    let unicode = b"aaaa.txt";
    extra.extend_from_slice(&((1 + 4 + unicode.len()) as u16).to_le_bytes());
    extra.push(1);
    extra.extend_from_slice(&crc32fast::hash(raw).to_le_bytes());
    extra.extend_from_slice(unicode);
    z.extend_from_slice(b"PK\x01\x02\x14\x00\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(raw.len() as u16).to_le_bytes());
    z.extend_from_slice(&(extra.len() as u16).to_le_bytes());
    z.extend_from_slice(&[0u8; 10]);
    z.extend_from_slice(&0u32.to_le_bytes());
    z.extend_from_slice(raw);
    z.extend_from_slice(&extra);
    let cd_len = z.len() - cd_at;
    z.extend_from_slice(b"PK\x05\x06\x00\x00\x00\x00\x01\x00\x01\x00");
    z.extend_from_slice(&(cd_len as u32).to_le_bytes());
    z.extend_from_slice(&(cd_at as u32).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    let out = run(&rules, &p, &with_attachment("u.zip", "application/zip", &z));
    assert_eq!(out.report.av, AvStatus::Filtered, "{:?}", out.findings);
}

#[test]
fn a_stored_member_is_reported_once_where_it_is() {
    let rules = rules();
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("eicar.com", stored).unwrap();
    w.write_all(&eicar()).unwrap();
    let z = w.finish().unwrap().into_inner();
    let out = run(
        &rules,
        &policy(),
        &with_attachment("e.zip", "application/zip", &z),
    );
    let paths: Vec<&str> = out.findings.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["e.zip/eicar.com"]);
}

/// walkBV: what jar (java.util.zip's ZipInputStream) reads from the local
/// headers whatever the central directory says is read too.
#[test]
fn a_zip_member_is_read_as_jar_reads_its_local_header() {
    let rules = rules();
    let infected = |z: &[u8], what: &str| {
        let out = run(
            &rules,
            &policy(),
            &with_attachment("v.zip", "application/zip", z),
        );
        assert_eq!(
            out.report.av,
            AvStatus::Infected,
            "{what}: {:?}",
            out.findings
        );
        out
    };
    // A directory of 0 octets in the central directory, a deflated EICAR
    // in its local header (walkBU U2) ...
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("aaaa/", zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(&eicar()).unwrap();
    let mut dir0 = w.finish().unwrap().into_inner();
    let cd = dir0.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    dir0[cd + 20..cd + 28].copy_from_slice(&[0; 8]);
    // ... whose local header says it needs version 6.4 (V1) ...
    let mut v1 = dir0.clone();
    v1[4] = 64;
    infected(&v1, "version needed 64");
    // ... or sizes of 0 without a data descriptor, or a compressed size
    // past the end of the file (V3): deflate ends itself.
    let mut v3 = dir0.clone();
    v3[18..26].copy_from_slice(&[0; 8]);
    infected(&v3, "local sizes 0");
    v3[18..22].copy_from_slice(&0x7fff_ff00u32.to_le_bytes());
    infected(&v3, "local compressed size past the end");

    // V2: a local header behind a deflated member whose central compressed
    // size covers it too; its stream ends before it.
    let readme = zip_of("readme.txt", b"nothing to see here, nothing at all");
    let hidden = zip_of("eicar.com", &eicar());
    let local_of = |z: &[u8]| {
        let cd = z.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        (z[..cd].to_vec(), z[cd..].to_vec())
    };
    let (readme_local, mut readme_cd) = local_of(&readme);
    let (hidden_local, _) = local_of(&hidden);
    let csize = u32::from_le_bytes(readme_cd[20..24].try_into().unwrap());
    readme_cd[20..24].copy_from_slice(&(csize + hidden_local.len() as u32).to_le_bytes());
    let cd_at = (readme_local.len() + hidden_local.len()) as u32;
    let eocd = readme_cd
        .windows(4)
        .position(|w| w == b"PK\x05\x06")
        .unwrap();
    readme_cd[eocd + 16..eocd + 20].copy_from_slice(&cd_at.to_le_bytes());
    let v2 = [readme_local, hidden_local, readme_cd].concat();
    let out = infected(&v2, "a member hidden behind a listed one");
    let paths: Vec<&str> = out.findings.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["v.zip/eicar.com"], "{:?}", out.findings);

    // V4: a member whose central sizes are wrong (0) and whose local
    // header is right: unzip and jar extract it.
    let mut v4 = zip_of("readme.txt", &eicar());
    let cd = v4.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    v4[cd + 16..cd + 28].copy_from_slice(&[0; 12]);
    infected(&v4, "central sizes 0");

    // walkBX N1: "stored" in the central directory (its sizes and CRC
    // those of the compressed bytes), deflated by the local header, as
    // unzip and jar read it: read both ways.
    let mut n1 = zip_of("readme.txt", &eicar());
    let data_at = 30 + "readme.txt".len() + usize::from(u16::from_le_bytes([n1[28], n1[29]]));
    let csize = u32::from_le_bytes(n1[18..22].try_into().unwrap());
    let mut crc = flate2::Crc::new();
    crc.update(&n1[data_at..data_at + csize as usize]);
    let cd = n1.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    n1[cd + 10..cd + 12].copy_from_slice(&0u16.to_le_bytes());
    n1[cd + 16..cd + 20].copy_from_slice(&crc.sum().to_le_bytes());
    n1[cd + 24..cd + 28].copy_from_slice(&csize.to_le_bytes());
    infected(&n1, "central stored, local deflated");
    // Its two readings are one file to the name filter (walkBY: its
    // line was given twice).
    let mut by_name = policy();
    by_name.include_by_name = vec![crate::config::Pattern::new("*.txt")];
    let out = run(
        &rules,
        &by_name,
        &with_attachment("v.zip", "application/zip", &n1),
    );
    let filtered: Vec<&str> = out
        .findings
        .iter()
        .filter(|f| f.kind == Kind::Filtered)
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(filtered, ["v.zip/readme.txt"], "{:?}", out.findings);

    // A zip stored whole in deflate's stored blocks of an outer member:
    // its local headers are in the clear, inside the outer stream, and
    // are read once, as the inner zip's members.
    // (The zip crate makes no level 0: the member is stored, then made
    // a deflated one of stored blocks.)
    let mut blocks = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::none());
    blocks.write_all(&hidden).unwrap();
    let blocks = blocks.finish().unwrap();
    let mut crc = flate2::Crc::new();
    crc.update(&hidden);
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("inner.zip", stored).unwrap();
    w.write_all(&blocks).unwrap();
    let mut outer = w.finish().unwrap().into_inner();
    let cd = outer.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    for (method, crc_at, usize_at) in [(8, 14, 22), (cd + 10, cd + 16, cd + 24)] {
        outer[method..method + 2].copy_from_slice(&8u16.to_le_bytes());
        outer[crc_at..crc_at + 4].copy_from_slice(&crc.sum().to_le_bytes());
        outer[usize_at..usize_at + 4].copy_from_slice(&(hidden.len() as u32).to_le_bytes());
    }
    assert!(
        outer.windows(10).any(|w| w == &hidden[..10]),
        "stored blocks"
    );
    let out = infected(&outer, "a zip in stored deflate blocks");
    let paths: Vec<&str> = out.findings.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["v.zip/inner.zip/eicar.com"], "{:?}", out.findings);
}

/// A multipart message as `with_attachment` makes it, but with `cut` (an
/// empty line) taken out: the header block after it runs into its body.
fn without_empty_line(msg: &[u8], after: &str) -> Vec<u8> {
    let text = String::from_utf8(msg.to_vec()).unwrap();
    let at = text.find(after).unwrap() + after.len();
    assert_eq!(&text[at..at + 2], "\r\n", "{after}");
    [&text[..at], &text[at + 2..]].concat().into_bytes()
}

#[test]
fn a_header_without_its_empty_line_ends_where_a_client_ends_it() {
    let rules = rules();
    let mut p = policy();
    p.include_by_name = vec![crate::config::Pattern::new("*.exe")];
    let e = eicar();
    let zip = with_attachment("inv.zip", "application/zip", &zip_of("eicar.com", &e));
    let cases: Vec<(&str, Vec<u8>, AvStatus)> = vec![
        (
            "top-level header of a multipart",
            without_empty_line(&zip, "boundary=\"XX\"\r\n"),
            AvStatus::Infected,
        ),
        (
            "header of the attachment",
            without_empty_line(&zip, "Content-Transfer-Encoding: base64\r\n"),
            AvStatus::Infected,
        ),
        (
            "both",
            without_empty_line(
                &without_empty_line(&zip, "boundary=\"XX\"\r\n"),
                "Content-Transfer-Encoding: base64\r\n",
            ),
            AvStatus::Infected,
        ),
        (
            "single part",
            [
                b"From: a@example.com\r\nSubject: t\r\n".as_slice(),
                &e,
                b"\r\nmore text\r\n",
            ]
            .concat(),
            AvStatus::Infected,
        ),
        (
            "body only",
            [e.as_slice(), b"\r\n"].concat(),
            AvStatus::Infected,
        ),
        (
            "text line, then the virus",
            [b"hello there\r\n".as_slice(), &e, b"\r\n"].concat(),
            AvStatus::Infected,
        ),
        (
            "named attachment",
            without_empty_line(
                &with_attachment("tool.exe", "application/octet-stream", b"MZ"),
                "boundary=\"XX\"\r\n",
            ),
            AvStatus::Filtered,
        ),
    ];
    for (case, msg, want) in cases {
        let out = run(&rules, &p, &msg);
        assert_eq!(out.report.av, want, "{case}: {:?}", out.findings);
        if want == AvStatus::Infected {
            // The part action works on the message as read: what is left
            // scans clean.
            let cleaned = out
                .rewritten
                .unwrap_or_else(|| panic!("{case}: not rewritten"));
            let again = run(&rules, &p, &cleaned);
            assert_eq!(
                again.report.av,
                AvStatus::Clean,
                "{case}: {:?}",
                again.findings
            );
        }
    }
}

#[test]
fn a_parameter_folded_next_to_its_equals_sign_is_read() {
    let rules = rules();
    let mut p = policy();
    p.include_by_name = vec![crate::config::Pattern::new("*.exe")];
    let e = eicar();
    let zip = with_attachment("inv.zip", "application/zip", &zip_of("eicar.com", &e));
    let text = String::from_utf8(zip).unwrap();
    for fold in ["boundary=\r\n \"XX\"", "boundary\r\n\t= \"XX\""] {
        let msg = text.replace("boundary=\"XX\"", fold);
        let out = run(&rules, &p, msg.as_bytes());
        assert_eq!(
            out.report.av,
            AvStatus::Infected,
            "{fold}: {:?}",
            out.findings
        );
    }
    let exe = String::from_utf8(with_attachment(
        "tool.exe",
        "application/octet-stream",
        b"MZ",
    ))
    .unwrap()
    .replace("filename=\"tool.exe\"", "filename=\r\n \"tool.exe\"")
    .replace("name=\"tool.exe\"", "name=\r\n\t\"tool.exe\"");
    let out = run(&rules, &p, exe.as_bytes());
    assert_eq!(out.report.av, AvStatus::Filtered, "{:?}", out.findings);
}

#[test]
fn base64_is_decoded_past_characters_outside_its_alphabet_and_without_padding() {
    let rules = rules();
    let e = eicar();
    let good = b64(&e).replace("\r\n", "");
    let forms = [
        ("a dot", format!("{}.{}", &good[..40], &good[40..])),
        (
            "junk and a line end",
            format!("{}!!**{}\r\n{}", &good[..20], &good[20..50], &good[50..]),
        ),
        ("no padding", good.trim_end_matches('=').to_string()),
    ];
    for (form, body) in forms {
        let msg = String::from_utf8(with_attachment("a.bin", "application/octet-stream", b"x"))
            .unwrap()
            .replace(&b64(b"x"), &body);
        let out = run(&rules, &policy(), msg.as_bytes());
        assert_eq!(
            out.report.viruses,
            ["EICAR_Test_File"],
            "{form}: {:?}",
            out.findings
        );
    }
}

#[test]
fn a_placeholder_for_a_long_member_name_keeps_its_lines_short() {
    let rules = rules();
    let mut p = policy();
    p.action_infected = Action::Placeholder;
    let member = format!("{}.com", "M".repeat(2000));
    let msg = with_attachment("z.zip", "application/zip", &zip_of(&member, &eicar()));
    let out = run(&rules, &p, &msg);
    assert_eq!(out.report.av, AvStatus::Infected, "{:?}", out.findings);
    let text = String::from_utf8(out.rewritten.unwrap()).unwrap();
    for line in text.split("\r\n") {
        assert!(line.len() <= 998, "{} octets: {line}", line.len());
    }
    assert!(
        text.contains(
            "Mailward replaced \"z.zip\" of this message: infected (EICAR_Test_File in z.zip/MMM"
        ),
        "{text}"
    );
    assert!(text.contains("MMM...MMM"), "{text}");
    assert!(text.contains("MMM.com)."), "{text}");
}

#[test]
fn the_name_filter_reads_both_names_and_names_as_windows_saves_them() {
    let rules = rules();
    let mut p = policy();
    p.include_by_name = vec![crate::config::Pattern::new("*.exe")];
    let plain = String::from_utf8(with_attachment(
        "tool.exe",
        "application/octet-stream",
        b"plain bytes",
    ))
    .unwrap();
    let cases = [
        ("trailing dot", plain.replace("tool.exe", "tool.exe.")),
        ("trailing space", plain.replace("tool.exe", "tool.exe ")),
        (
            "Content-Type name only says .exe",
            plain.replace("filename=\"tool.exe\"", "filename=\"tool.txt\""),
        ),
    ];
    for (case, msg) in cases {
        let out = run(&rules, &p, msg.as_bytes());
        assert_eq!(
            out.report.av,
            AvStatus::Filtered,
            "{case}: {:?}",
            out.findings
        );
        assert_eq!(out.report.filter_rules, ["name:*.exe"], "{case}");
    }
    let member = with_attachment(
        "z.zip",
        "application/zip",
        &zip_of("tool.exe.", b"plain bytes"),
    );
    let out = run(&rules, &p, &member);
    assert_eq!(
        out.report.av,
        AvStatus::Filtered,
        "member: {:?}",
        out.findings
    );
}

/// A message whose one attachment carries the header parameters given.
fn with_names(ctype_params: &str, disposition_params: &str, data: &[u8]) -> Vec<u8> {
    format!(
        "From: a@example.com\r\nTo: b@example.com\r\nSubject: t\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n\
Hello\r\n--XX\r\nContent-Type: application/octet-stream{ctype_params}\r\n\
Content-Disposition: attachment{disposition_params}\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--XX--\r\n",
        b64(data)
    )
    .into_bytes()
}

#[test]
fn every_name_a_part_carries_is_filtered_and_reported_as_the_one_that_matched() {
    // walkZ 4 and 6: a plain filename first hid the RFC 2231 one (which
    // RFC 6266 tells clients to prefer), and a hit on the Content-Type
    // name was reported under the disposition filename.
    let rules = rules();
    let mut p = policy();
    p.include_by_name = vec![crate::config::Pattern::new("*.exe")];
    let cases = [
        ("", "; filename=\"tool.txt\"; filename*=utf-8''tool.exe"),
        ("; name=\"tool.txt\"; name*=utf-8''tool.exe", ""),
        ("", "; filename=\"tool.txt\"; filename=\"tool.exe\""),
        ("; name=\"tool.exe\"", "; filename=\"tool.txt\""),
    ];
    for (ct, cd) in cases {
        let out = run(&rules, &p, &with_names(ct, cd, b"plain bytes"));
        let case = format!("Content-Type ...{ct} / Content-Disposition ...{cd}");
        assert_eq!(
            out.report.av,
            AvStatus::Filtered,
            "{case}: {:?}",
            out.findings
        );
        assert_eq!(out.report.filter_rules, ["name:*.exe"], "{case}");
        let paths: Vec<&str> = out.findings.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["tool.txt (also named tool.exe)"], "{case}");
    }
    // Two whole Content-Disposition fields: both are read.
    let two = String::from_utf8(with_names("", "; filename=\"tool.txt\"", b"x"))
        .unwrap()
        .replace(
            "Content-Transfer-Encoding",
            "Content-Disposition: attachment; filename=\"tool.exe\"\r\nContent-Transfer-Encoding",
        );
    let out = run(&rules, &p, two.as_bytes());
    assert_eq!(out.report.av, AvStatus::Filtered, "{:?}", out.findings);
    // The name shown is reported as such; a clean pair stays clean.
    let out = run(&rules, &p, &with_names("", "; filename=\"tool.exe\"", b"x"));
    let paths: Vec<&str> = out.findings.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["tool.exe"]);
    let out = run(
        &rules,
        &p,
        &with_names("; name*=utf-8''a.txt", "; filename=\"b.txt\"", b"x"),
    );
    assert_eq!(out.report.av, AvStatus::Clean, "{:?}", out.findings);
}

#[test]
fn the_name_rules_see_names_as_windows_saves_them_and_every_name() {
    // walkZ 5: the YARA `filename` was the disposition name as written:
    // the built-in rules missed a trailing dot or space and a Content-Type
    // name that said otherwise, with no name filter configured.
    let rules = rules();
    let p = policy();
    let cases = [
        (
            "",
            "; filename=\"invoice.pdf.exe.\"",
            b"x".as_slice(),
            "Suspicious_Double_Extension",
            "invoice.pdf.exe.",
        ),
        (
            "",
            "; filename=\"invoice.pdf.exe \"",
            b"x",
            "Suspicious_Double_Extension",
            "invoice.pdf.exe ",
        ),
        (
            "",
            "; filename=\"scan.pdf. .\"",
            b"MZ\x90\x00rest",
            "Suspicious_Disguised_Executable",
            "scan.pdf. .",
        ),
        (
            "; name=\"invoice.pdf.exe\"",
            "; filename=\"invoice.pdf\"",
            b"x",
            "Suspicious_Double_Extension",
            "invoice.pdf (also named invoice.pdf.exe)",
        ),
        (
            "",
            "; filename=\"tool.txt\"; filename*=utf-8''invoice.pdf.exe",
            b"x",
            "Suspicious_Double_Extension",
            "tool.txt (also named invoice.pdf.exe)",
        ),
    ];
    for (ct, cd, data, rule, path) in cases {
        let out = run(&rules, &p, &with_names(ct, cd, data));
        let case = format!("Content-Type ...{ct} / Content-Disposition ...{cd}");
        assert_eq!(
            out.report.av,
            AvStatus::Suspicious,
            "{case}: {:?}",
            out.findings
        );
        assert_eq!(out.report.viruses, [rule], "{case}");
        let paths: Vec<&str> = out.findings.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, [path], "{case}");
    }
}

#[test]
fn a_zip_with_a_byte_in_front_is_unpacked() {
    let rules = rules();
    let z = [b"\n".as_slice(), &zip_of("eicar.com", &eicar())].concat();
    let out = run(
        &rules,
        &policy(),
        &with_attachment("p.zip", "application/zip", &z),
    );
    assert_eq!(
        out.report.viruses,
        ["EICAR_Test_File"],
        "{:?}",
        out.findings
    );
}

/// A forwarded message (message/rfc822, sent as is) holding a multipart
/// with a base64 attachment, and a long text part after it, the way
/// Python's `email` and Thunderbird build a forward (36-character
/// boundaries). walkS finding 1: its structure was read through the nested
/// message's own slice with offsets into the whole message, so a forward
/// was `av/error` ("a header without its empty line") by the length of its
/// boundary, and an attachment early in a long forward was decoded from the
/// wrong bytes: the virus in it went unseen.
fn forward(attachment: &[u8], boundary: &str, trailing: usize) -> Vec<u8> {
    format!(
        "From: alice@client.example\r\nTo: bob@example.com\r\nSubject: fwd\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"OUTER\"\r\n\r\n\
--OUTER\r\nContent-Type: text/plain\r\n\r\nsee below\r\n\
--OUTER\r\nContent-Type: message/rfc822\r\n\r\n\
From: x@y.example\r\nSubject: inner\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
--{boundary}\r\nContent-Type: text/plain\r\n\r\ninner body\r\n\
--{boundary}\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\n\r\n\
{}\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\n{}\r\n--{boundary}--\r\n\r\n--OUTER--\r\n",
        b64(attachment),
        "The quoted thread goes on. ".repeat(trailing / 27 + 1),
    )
    .into_bytes()
}

#[test]
fn a_forwarded_message_is_read_where_its_parts_are_whatever_its_boundary() {
    let rules = rules();
    let policy = policy();
    for len in [20, 25, 30, 34, 36, 40, 60, 70] {
        let boundary: String = "=_Part_"
            .chars()
            .chain(std::iter::repeat('B'))
            .take(len)
            .collect();
        for trailing in [0, 2000] {
            let clean = forward(b"hello world hello world", &boundary, trailing);
            let out = run(&rules, &policy, &clean);
            assert_eq!(
                out.report.av,
                AvStatus::Clean,
                "boundary of {len}, {trailing} trailing: {:?}",
                out.findings
            );
            let infected = forward(&eicar(), &boundary, trailing);
            let out = run(&rules, &policy, &infected);
            assert_eq!(
                out.report.av,
                AvStatus::Infected,
                "boundary of {len}, {trailing} trailing: {:?}",
                out.findings
            );
            assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
        }
    }
}

/// A message with a text part (`text`, its lines as sent) and then a base64
/// EICAR attachment `e.com`, in a multipart with boundary `XX`.
fn text_then_eicar(text: &str) -> Vec<u8> {
    format!(
        "From: a@example.com\r\nTo: b@example.com\r\nSubject: t\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n\
{text}\r\n--XX\r\nContent-Type: application/octet-stream; name=\"e.com\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--XX--\r\n",
        b64(&eicar())
    )
    .into_bytes()
}

#[test]
fn a_boundary_inside_a_line_is_no_delimiter() {
    // walkAJ 1b: mail-parser takes `--XX--` anywhere for the close
    // delimiter, so the attachment after `hello --XX--` was never
    // scanned, while every client (RFC 2046 5.1.1: a delimiter is a line)
    // shows it.
    let rules = rules();
    for text in [
        "hello --XX--",
        "Hi Bob (ref --XX--) regards",
        " --XX--",
        "\t--XX",
        "--XX--foo",
        "--XXfoo",
        "a --XX b --XX-- c",
        "---XX--",
    ] {
        let out = run(&rules, &policy(), &text_then_eicar(text));
        assert_eq!(
            out.report.viruses,
            ["EICAR_Test_File"],
            "{text:?}: {:?}",
            out.findings
        );
        // And the part removed is the attachment, not the text.
        let rewritten = String::from_utf8(out.rewritten.unwrap()).unwrap();
        assert!(!rewritten.contains(&b64(&eicar())[..40]), "{text:?}");
        assert!(rewritten.contains("Content-Type: text/plain"), "{text:?}");
    }
    // A line `--XXfoo` is text to RFC 2046 readers, but a lenient one
    // (mail-parser) takes it for a delimiter: both readings are scanned.
    let suffixed = String::from_utf8(text_then_eicar("hello"))
        .unwrap()
        .replacen(
            "\r\n--XX\r\nContent-Type: application",
            "\r\n--XXfoo\r\nContent-Type: application",
            1,
        );
    assert!(suffixed.contains("--XXfoo"));
    let out = run(&rules, &policy(), suffixed.as_bytes());
    assert_eq!(
        out.report.viruses,
        ["EICAR_Test_File"],
        "{:?}",
        out.findings
    );
    // Delimiter lines with trailing white space, and boundaries that are
    // prefixes of one another (XX outside, XXY inside), are still read.
    let rules = rules;
    let nested = format!(
        "Subject: t\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n\
--XX \t\r\nContent-Type: multipart/alternative; boundary=XXY\r\n\r\n--XXY\r\n\
Content-Type: text/plain\r\n\r\nhi\r\n--XXY--  \r\n--XX\r\n\
Content-Type: application/octet-stream; name=e.com\r\nContent-Transfer-Encoding: base64\r\n\r\n\
{}\r\n--XX--\r\n",
        b64(&eicar())
    );
    let msg = crate::check::parse(nested.as_bytes()).unwrap();
    assert_eq!(msg.parts.len(), 4, "{:?}", msg.parts);
    assert_eq!(
        mail_parser::MimeHeaders::attachment_name(&msg.parts[3]),
        Some("e.com")
    );
    let out = run(&rules, &policy(), nested.as_bytes());
    assert_eq!(out.report.viruses, ["EICAR_Test_File"]);
}

#[test]
fn a_duplicated_content_field_is_read_as_clients_read_it_and_as_mail_parser_does() {
    // walkAJ 1: clients read the first Content-Transfer-Encoding or
    // Content-Type of a header block, mail-parser the last: base64 then
    // 7bit (or multipart then text/plain) hid the EICAR from the scan.
    let rules = rules();
    let att = |cte: &str| {
        String::from_utf8(text_then_eicar("hello"))
            .unwrap()
            .replace("Content-Transfer-Encoding: base64\r\n", cte)
    };
    let top = String::from_utf8(text_then_eicar("hello"))
        .unwrap()
        .replace(
            "boundary=\"XX\"\r\n",
            "boundary=\"XX\"\r\ncontent-type: text/plain\r\n",
        );
    let single = format!(
        "Subject: t\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: 7bit\r\n\r\n{}\r\n",
        b64(&eicar())
    );
    for (what, msg) in [
        (
            "base64 then 7bit",
            att("Content-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: 7bit\r\n"),
        ),
        (
            "7bit then base64",
            att("Content-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: base64\r\n"),
        ),
        (
            "base64 then a folded 7bit",
            att("Content-Transfer-Encoding: base64\r\nContent-Transfer-Encoding:\r\n 7bit\r\n"),
        ),
        ("multipart then text/plain", top),
        ("a single part, base64 then 7bit", single),
    ] {
        let out = run(&rules, &policy(), msg.as_bytes());
        assert_eq!(
            out.report.viruses,
            ["EICAR_Test_File"],
            "{what}: {:?}",
            out.findings
        );
    }
    // Found in mail-parser's reading only: the path says why.
    let last = att("Content-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: base64\r\n");
    let out = run(&rules, &policy(), last.as_bytes());
    let paths: Vec<&str> = out.findings.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        ["e.com (read with the last of two Content-Type or Content-Transfer-Encoding fields)"]
    );
}

#[test]
fn a_name_split_into_encoded_words_is_matched_joined() {
    // walkAJ 3: RFC 2047 6.2 drops the white space between encoded-words;
    // mail-parser keeps it, and `tool.e xe` escaped `*.exe`.
    let rules = rules();
    let mut p = policy();
    p.include_by_name = vec![crate::config::Pattern::new("*.exe")];
    for (ct, cd) in [
        ("", "; filename=\"=?utf-8?Q?tool.e?= =?utf-8?Q?xe?=\""),
        ("", "; filename=\"=?utf-8?Q?tool.e?=\r\n =?utf-8?Q?xe?=\""),
        ("", "; filename=\"=?utf-8?B?dG9vbC4=?=\t=?utf-8?B?ZXhl?=\""),
        ("; name=\"=?utf-8?Q?tool.e?= =?utf-8?Q?xe?=\"", ""),
    ] {
        let out = run(&rules, &p, &with_names(ct, cd, b"MZ plain bytes"));
        assert_eq!(
            out.report.av,
            AvStatus::Filtered,
            "{ct}{cd}: {:?}",
            out.findings
        );
    }
    // A space elsewhere in a name is no second name.
    let out = run(
        &rules,
        &p,
        &with_names("", "; filename=\"my tool.txt\"", b"x"),
    );
    assert_eq!(out.report.av, AvStatus::Clean, "{:?}", out.findings);
}

#[test]
fn a_multipart_with_two_boundaries_is_an_error() {
    // walkAJ 7: readers differ in which of two boundaries they take.
    let rules = rules();
    for ct in [
        "boundary=\"AA\"; boundary=\"XX\"",
        "boundary*=''AA; boundary=\"XX\"",
        "boundary=\"AA\"; boundary*=''XX",
    ] {
        let msg = String::from_utf8(text_then_eicar("hello"))
            .unwrap()
            .replace("boundary=\"XX\"", ct);
        let out = run(&rules, &policy(), msg.as_bytes());
        // av/error, or infected where the reading taken shows the EICAR.
        assert_ne!(out.report.av, AvStatus::Clean, "{ct}: {:?}", out.findings);
        assert!(
            out.findings
                .iter()
                .any(|f| f.name.contains("names two boundaries")),
            "{ct}: {:?}",
            out.findings
        );
    }
    // The same boundary twice is no ambiguity.
    let msg = String::from_utf8(text_then_eicar("hello"))
        .unwrap()
        .replace("boundary=\"XX\"", "boundary=\"XX\"; boundary=XX");
    let out = run(&rules, &policy(), msg.as_bytes());
    assert_eq!(out.report.av, AvStatus::Infected, "{:?}", out.findings);
}

#[test]
fn an_opaque_signed_s_mime_message_is_scanned_inside() {
    // walkAJ 4: `openssl smime -sign -nodetach` wraps the MIME entity
    // (here a multipart with the base64 EICAR `e.com`) in a CMS
    // SignedData; clients unpack it and show the attachment. The two
    // files were made with openssl 3 (a self-signed key, `-outform SMIME`).
    let rules = rules();
    let signed = include_bytes!("unpack/testdata/smime-signed-eicar.eml");
    let out = run(&rules, &policy(), signed);
    assert_eq!(
        out.report.viruses,
        ["EICAR_Test_File"],
        "{:?}",
        out.findings
    );
    let paths: Vec<&str> = out.findings.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["smime.p7m/e.com"]);
    // Encrypted: Mailward cannot look inside.
    let encrypted = include_bytes!("unpack/testdata/smime-encrypted.eml");
    let out = run(&rules, &policy(), encrypted);
    assert_eq!(out.report.av, AvStatus::Protected, "{:?}", out.findings);
    assert_eq!(out.findings[0].name, "encrypted S/MIME message");
    // A blob cut short is an error, never clean.
    let text = String::from_utf8_lossy(signed).to_string();
    let cut = text
        .split_once("\n\n")
        .map_or(text.clone(), |(head, body)| {
            format!("{head}\n\n{}\n", &body[..body.len() / 2])
        });
    let cut = cut.replace("\r\n", "\n");
    let out = run(&rules, &policy(), cut.as_bytes());
    assert_ne!(out.report.av, AvStatus::Clean, "{:?}", out.findings);
}

/// A message whose body is a multipart (boundary `ZZ`) sent with
/// `Content-Transfer-Encoding: {cte}`, its body as given.
fn encoded_multipart(cte: &str, body: &str) -> Vec<u8> {
    format!(
        "From: shop@example.com\r\nTo: b@example.com\r\nSubject: Your order\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"ZZ\"\r\n\
Content-Transfer-Encoding: {cte}\r\n\r\n{body}"
    )
    .into_bytes()
}

#[test]
fn a_multipart_sent_encoded_is_read_as_sent_and_decoded() {
    // walkAL 1: naive PHP/web-shop mail puts quoted-printable on the
    // multipart itself; clients ignore it and show the parts. It was
    // av/error, and a placeholder replaced the whole order confirmation.
    let rules = rules();
    let shop = "--ZZ\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\n\
Thank you for your order. Total: 12,50 =E2=82=AC\r\n\
--ZZ\r\nContent-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\n\
<p style=3D\"color:red\">Thank you for your order.</p>\r\n--ZZ--\r\n";
    for cte in ["quoted-printable", "base64"] {
        let body = if cte == "base64" {
            b64(shop.as_bytes())
        } else {
            shop.to_string()
        };
        let out = run(&rules, &policy(), &encoded_multipart(cte, &body));
        assert_eq!(out.report.av, AvStatus::Clean, "{cte}: {:?}", out.findings);
    }
    let attachment = format!(
        "Content-Type: application/octet-stream; name=e.com\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        b64(&eicar())
    );
    // An EICAR only a reader that decodes first sees: hidden under base64
    // (walkAJ 9), or behind `=2D=2DZZ`, a delimiter once decoded.
    let hidden =
        format!("--ZZ\r\nContent-Type: text/plain\r\n\r\nhello\r\n--ZZ\r\n{attachment}--ZZ--\r\n");
    let behind = format!(
        "--ZZ\r\nContent-Type: text/plain\r\n\r\nhello\r\n=2D=2DZZ\r\n{attachment}--ZZ--\r\n"
    );
    // An EICAR only a reader of the parts as sent sees: once decoded, the
    // `=` at the end of `hello=` joins the delimiter line to the text.
    let as_sent =
        format!("--ZZ\r\nContent-Type: text/plain\r\n\r\nhello=\r\n--ZZ\r\n{attachment}--ZZ--\r\n");
    for (what, msg, path) in [
        (
            "base64",
            encoded_multipart("base64", &b64(hidden.as_bytes())),
            "part 1 (read transfer-decoded)/e.com",
        ),
        (
            "quoted-printable, decoded",
            encoded_multipart("quoted-printable", &behind),
            "part 1 (read transfer-decoded)/e.com",
        ),
        (
            "quoted-printable, as sent",
            encoded_multipart("quoted-printable", &as_sent),
            "e.com",
        ),
    ] {
        let out = run(&rules, &policy(), &msg);
        assert_eq!(
            out.report.av,
            AvStatus::Infected,
            "{what}: {:?}",
            out.findings
        );
        let paths: Vec<&str> = out.findings.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, [path], "{what}");
        // The action takes the multipart that holds it: here the body.
        let cleaned = out
            .rewritten
            .unwrap_or_else(|| panic!("{what}: not rewritten"));
        let again = run(&rules, &policy(), &cleaned);
        assert_eq!(
            again.report.av,
            AvStatus::Clean,
            "{what}: {:?}",
            again.findings
        );
    }
    // A nested multipart sent so, as the attachment of a message.
    let nested = String::from_utf8(text_then_eicar("hello"))
        .unwrap()
        .replace(
            &format!(
                "Content-Type: application/octet-stream; name=\"e.com\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{}",
                b64(&eicar())
            ),
            &format!(
                "Content-Type: multipart/mixed; boundary=\"ZZ\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{}",
                b64(hidden.as_bytes())
            ),
        );
    assert!(nested.contains("boundary=\"ZZ\""));
    let out = run(&rules, &policy(), nested.as_bytes());
    let found: Vec<(&str, &str)> = out
        .findings
        .iter()
        .map(|f| (f.name.as_str(), f.path.as_str()))
        .collect();
    assert_eq!(
        found,
        [("EICAR_Test_File", "part 3 (read transfer-decoded)/e.com")]
    );
    // A shop's zip attachment: its base64 ends in `=`, which takes the
    // delimiter line below it once the whole is decoded. Read as sent
    // (as clients read it), it is whole: what decoding damages is no
    // error.
    let zip = (0..64)
        .map(|n| zip_of("invoice.txt", &vec![b'x'; n]))
        .find(|z| z.len() % 3 != 0)
        .unwrap();
    let shop_zip = format!(
        "--ZZ\r\nContent-Type: text/plain\r\n\r\nhello\r\n--ZZ\r\n\
Content-Type: application/zip; name=invoice.zip\r\nContent-Transfer-Encoding: base64\r\n\r\n\
{}\r\n--ZZ--\r\n",
        b64(&zip)
    );
    assert!(shop_zip.contains("=\r\n--ZZ--"));
    let out = run(
        &rules,
        &policy(),
        &encoded_multipart("quoted-printable", &shop_zip),
    );
    assert_eq!(out.report.av, AvStatus::Clean, "{:?}", out.findings);
    // No reading finds the parts: not clean.
    let out = run(
        &rules,
        &policy(),
        &encoded_multipart("base64", &b64(b"no delimiter line in here\r\n")),
    );
    assert_eq!(out.report.av, AvStatus::Error, "{:?}", out.findings);
    assert!(
        out.findings[0].name.contains("no reading finds its parts"),
        "{:?}",
        out.findings
    );
}

/// The multipart sent quoted-printable whose EICAR only a reader that
/// decodes it first sees (`=2D=2DZZ`, a delimiter once decoded), as a
/// message with boundary `ZZ`.
fn eicar_behind_encoded_delimiter() -> Vec<u8> {
    encoded_multipart(
        "quoted-printable",
        &format!(
            "--ZZ\r\nContent-Type: text/plain\r\n\r\nhello\r\n=2D=2DZZ\r\n\
Content-Type: application/octet-stream; name=e.com\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--ZZ--\r\n",
            b64(&eicar())
        ),
    )
}

#[test]
fn a_decoded_reading_refused_by_depth_or_budget_is_an_error() {
    // walkAN 1, 2: when the parts were read as sent, the transfer-decoded
    // reading was dropped without a word when max_scan_depth or the
    // unpacking budget refused it: the EICAR only it sees went out
    // "X-Mailward-AV: clean".
    let rules = rules();
    let hidden = eicar_behind_encoded_delimiter();
    // Forwarded once: the multipart lies at depth 1.
    let forwarded = [
        &b"From: a@example.com\r\nTo: b@example.com\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n\
Content-Type: message/rfc822\r\n\r\n"[..],
        &hidden,
    ]
    .concat();
    let mut p = policy();
    p.max_scan_depth = 2;
    let out = run(&rules, &p, &forwarded);
    assert_eq!(out.report.av, AvStatus::Infected, "{:?}", out.findings);
    // Depth exactly max_scan_depth: the decoded reading would be one more.
    p.max_scan_depth = 1;
    let out = run(&rules, &p, &forwarded);
    assert_eq!(out.report.av, AvStatus::Error, "{:?}", out.findings);
    assert!(
        out.findings
            .iter()
            .any(|f| f.name.contains("max_scan_depth") && f.path.contains("read transfer-decoded")),
        "{:?}",
        out.findings
    );
    // A zip of zeros that leaves the budget too little for the decoded copy.
    let zeros = 200_000;
    let body = String::from_utf8(hidden).unwrap();
    let (head, inner) = body.split_once("\r\n\r\n").unwrap();
    let inner_header = head
        .lines()
        .filter(|l| l.starts_with("Content-"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let msg = format!(
        "From: a@example.com\r\nTo: b@example.com\r\nSubject: t\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\n\
Content-Type: application/zip; name=\"z.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
{}\r\n--XX\r\n{inner_header}\r\n\r\n{inner}\r\n--XX--\r\n",
        b64(&zip_of("zeros", &vec![0u8; zeros]))
    );
    let mut p = policy();
    p.max_unpacked_size = crate::config::ByteSize(zeros as u64 * 4);
    let out = run(&rules, &p, msg.as_bytes());
    assert_eq!(out.report.av, AvStatus::Infected, "{:?}", out.findings);
    // Nearly used: what is left is less than the decoded copy.
    p.max_unpacked_size = crate::config::ByteSize(zeros as u64 + 100);
    let out = run(&rules, &p, msg.as_bytes());
    assert_eq!(out.report.av, AvStatus::Error, "{:?}", out.findings);
    assert!(
        out.findings
            .iter()
            .any(|f| f.name.contains("max_unpacked_size")
                && f.path.contains("read transfer-decoded")),
        "{:?}",
        out.findings
    );
}

#[test]
fn an_inner_multipart_left_unclosed_ends_at_the_outer_delimiter() {
    // walkAN 3: mail-parser read the rest of the message into the inner
    // multipart left unclosed, so that the outer parts after it (an
    // EICAR, a setup.exe), which Python's `email` and clients show, were
    // never scanned; and a placeholder for a part inside it took the
    // clean part after it and the close delimiter too (walkAN 4).
    let rules = rules();
    let eicar_part = format!(
        "Content-Type: application/octet-stream; name=\"v.com\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        b64(&eicar())
    );
    let head = "From: a@example.com\r\nTo: b@example.com\r\nSubject: t\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n\
keep me 1\r\n--XX\r\nContent-Type: multipart/mixed; boundary=\"YY\"\r\n\r\n--YY\r\n";
    // The EICAR after the unclosed inner multipart, in the outer one.
    let after =
        format!("{head}Content-Type: text/plain\r\n\r\nhello\r\n--XX\r\n{eicar_part}--XX--\r\n");
    let out = run(&rules, &policy(), after.as_bytes());
    assert_eq!(out.report.av, AvStatus::Infected, "{:?}", out.findings);
    // The EICAR inside it, a clean part after it: only the EICAR goes.
    let inside = format!(
        "{head}{eicar_part}--XX\r\nContent-Type: text/plain\r\n\r\nkeep me 3\r\n--XX--\r\n"
    );
    let out = run(&rules, &policy(), inside.as_bytes());
    assert_eq!(out.report.av, AvStatus::Infected, "{:?}", out.findings);
    let cleaned = String::from_utf8(out.rewritten.expect("rewritten")).unwrap();
    for kept in ["keep me 1", "keep me 3", "\r\n--XX--\r\n"] {
        assert!(cleaned.contains(kept), "{kept:?} lost:\n{cleaned}");
    }
    let again = run(&rules, &policy(), cleaned.as_bytes());
    assert_eq!(again.report.av, AvStatus::Clean, "{:?}", again.findings);
}

/// The start of a detached CMS SignedData as Outlook Express and
/// `openssl cms -sign -stream` write it (BER, indefinite lengths): the
/// encapContentInfo holds `id-data` and no eContent; then a certificate
/// begins.
fn detached_signature_start() -> Vec<u8> {
    let id_data = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x01";
    let sha1 = b"\x30\x09\x06\x05\x2b\x0e\x03\x02\x1a\x05\x00";
    [
        b"\x30\x80\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02\xa0\x80\x30\x80\x02\x01\x01\x31\x0b"
            .as_slice(),
        sha1,
        b"\x30\x80",
        id_data,
        b"\x00\x00\xa0\x80\x30\x82\x03\x00\x30\x82\x02\x69",
        &[0x5a; 200],
    ]
    .concat()
}

#[test]
fn a_damaged_detached_s_mime_signature_is_no_error() {
    // walkAL 2: Outlook Express BER signatures in real ham, one cut short
    // by a bounce, were av/error "damaged S/MIME data", and a placeholder
    // replaced the signature or the returned message. A detached
    // signature carries no content; its bytes are scanned all the same.
    let rules = rules();
    let signed = |sig: &[u8]| {
        format!(
            "From: a@example.com\r\nSubject: signed\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; \
micalg=SHA1; boundary=\"S\"\r\n\r\n--S\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--S\r\nContent-Type: application/x-pkcs7-signature; name=\"smime.p7s\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n{}\r\n--S--\r\n",
            b64(sig)
        )
        .into_bytes()
    };
    let out = run(&rules, &policy(), &signed(&detached_signature_start()));
    assert_eq!(out.report.av, AvStatus::Clean, "{:?}", out.findings);
    // Content inside (opaque), cut short the same way: it may hide what
    // a client shows, so still an error.
    let opaque = detached_signature_start();
    let at = opaque
        .windows(4)
        .position(|w| w == b"\x00\x00\xa0\x80")
        .unwrap();
    let opaque = [
        &opaque[..at],
        b"\xa0\x80\x24\x80\x04\x05hello".as_slice(),
        &opaque[at + 2..],
    ]
    .concat();
    let out = run(&rules, &policy(), &signed(&opaque));
    assert_eq!(out.report.av, AvStatus::Error, "{:?}", out.findings);
    assert_eq!(out.findings[0].name, "damaged S/MIME data");
}

/// yEnc of `data` named `name` (`line=128`), its CRC-32 as given.
fn yenc(name: &str, data: &[u8], crc: u32) -> String {
    let mut out = format!("=ybegin line=128 size={} name={name}\r\n", data.len());
    for &c in data {
        let o = c.wrapping_add(42);
        if matches!(o, 0 | b'\n' | b'\r' | b'=') {
            out.push('=');
            out.push(char::from(o.wrapping_add(64)));
        } else {
            out.push(char::from(o));
        }
    }
    out.push_str(&format!(
        "\r\n=yend size={} crc32={crc:08x}\r\n",
        data.len()
    ));
    out
}

#[test]
fn a_text_quoting_a_yenc_header_is_text() {
    // walkAL 3: a user's question quoting a yEnc header and trailer was
    // av/error "damaged yEnc archive ... the yEnc CRC does not match".
    let rules = rules();
    let text = |body: &str| {
        format!("Subject: yEnc\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-8859-1\r\n\r\n{body}").into_bytes()
    };
    for quoted in [
        "The header looks like this:\r\n\r\n=ybegin line=128 size=19338 name=joystick.jpg\r\n\
(data)\r\n=yend size=19338 crc32=ded29f4f\r\n\r\nWhy does my decoder fail?\r\n",
        "=ybegin line=128 size=19338 name=joystick.jpg\r\nand then nothing\r\n",
    ] {
        let out = run(&rules, &policy(), &text(quoted));
        assert_eq!(
            out.report.av,
            AvStatus::Clean,
            "{quoted}: {:?}",
            out.findings
        );
    }
    // A real yEnc file: the EICAR in it is found, and a wrong CRC is damage.
    let crc = {
        let mut h = flate2::Crc::new();
        h.update(&eicar());
        h.sum()
    };
    let out = run(&rules, &policy(), &text(&yenc("e.com", &eicar(), crc)));
    assert_eq!(
        out.report.viruses,
        ["EICAR_Test_File"],
        "{:?}",
        out.findings
    );
    let clean = b"a harmless file".repeat(20);
    let out = run(&rules, &policy(), &text(&yenc("a.bin", &clean, 1)));
    assert_eq!(out.report.av, AvStatus::Error, "{:?}", out.findings);
    assert_eq!(
        out.findings[0].name,
        "damaged yEnc archive: a.bin: the yEnc CRC does not match"
    );
}

#[test]
fn encrypted_pgp_mail_is_protected() {
    // walkAL 4: PGP/MIME encrypted mail was av/clean while encrypted
    // S/MIME is av/protected.
    let rules = rules();
    let armored =
        "-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA1x2y3z4AQf/abcdefghijklmnop\r\n=Ab12\r\n\
-----END PGP MESSAGE-----\r\n";
    let pgp_mime = format!(
        "Subject: secret\r\nMIME-Version: 1.0\r\nContent-Type: multipart/encrypted; \
protocol=\"application/pgp-encrypted\"; boundary=\"E\"\r\n\r\n\
--E\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
--E\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n{armored}--E--\r\n"
    );
    let out = run(&rules, &policy(), pgp_mime.as_bytes());
    assert_eq!(out.report.av, AvStatus::Protected, "{:?}", out.findings);
    let found: Vec<(&str, &str)> = out
        .findings
        .iter()
        .map(|f| (f.name.as_str(), f.path.as_str()))
        .collect();
    assert_eq!(found, [("encrypted PGP/MIME message", "part 1")]);
    // An armored attachment, and a body encrypted inline.
    let attached = with_attachment(
        "report.pdf.gpg",
        "application/octet-stream",
        armored.as_bytes(),
    );
    let inline = format!("Subject: secret\r\n\r\n{armored}");
    for msg in [attached, inline.into_bytes()] {
        let out = run(&rules, &policy(), &msg);
        assert_eq!(out.report.av, AvStatus::Protected, "{:?}", out.findings);
        assert_eq!(out.findings[0].name, "encrypted PGP message");
    }
    // Signed only: readable, clean.
    let signed =
        "Subject: s\r\n\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nhello\r\n";
    let out = run(&rules, &policy(), signed.as_bytes());
    assert_eq!(out.report.av, AvStatus::Clean, "{:?}", out.findings);
}

/// A zip local header and its data, written by hand for the shapes no
/// writer makes.
fn raw_local(name: &str, flags: u16, method: u16, sizes: (u32, u32, u32), data: &[u8]) -> Vec<u8> {
    let (crc, compressed, size) = sizes;
    let mut h = b"PK\x03\x04".to_vec();
    for v in [20u16, flags, method, 0, 0] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    for v in [crc, compressed, size] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h.extend_from_slice(&(name.len() as u16).to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(name.as_bytes());
    h.extend_from_slice(data);
    h
}

/// A central directory record, by hand (see [`raw_local`]).
fn raw_central(name: &str, flags: u16, method: u16, sizes: (u32, u32, u32), at: u32) -> Vec<u8> {
    let (crc, compressed, size) = sizes;
    let mut r = b"PK\x01\x02".to_vec();
    for v in [20u16, 20, flags, method, 0, 0] {
        r.extend_from_slice(&v.to_le_bytes());
    }
    for v in [crc, compressed, size] {
        r.extend_from_slice(&v.to_le_bytes());
    }
    for v in [name.len() as u16, 0, 0, 0, 0] {
        r.extend_from_slice(&v.to_le_bytes());
    }
    r.extend_from_slice(&0u32.to_le_bytes());
    r.extend_from_slice(&at.to_le_bytes());
    r.extend_from_slice(name.as_bytes());
    r
}

/// An end record: entries on this disk, entries in all, the directory's
/// size and offset.
fn raw_end(on_disk: u16, total: u16, size: usize, at: usize) -> Vec<u8> {
    let mut e = b"PK\x05\x06".to_vec();
    for v in [0u16, 0, on_disk, total] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    e.extend_from_slice(&(size as u32).to_le_bytes());
    e.extend_from_slice(&(at as u32).to_le_bytes());
    e.extend_from_slice(&0u16.to_le_bytes());
    e
}

fn crc_of(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    crc.sum()
}

fn deflated(data: &[u8]) -> Vec<u8> {
    let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    d.write_all(data).unwrap();
    d.finish().unwrap()
}

/// walkBZ: what Python, 7-Zip, unzip or jar extract from a zip whose end
/// record or central records lie is read too.
#[test]
fn a_zip_is_read_as_python_7zip_and_jar_read_it_whatever_its_end_record_says() {
    let rules = rules();
    let judge = |z: &[u8]| {
        run(
            &rules,
            &policy(),
            &with_attachment("w.zip", "application/zip", z),
        )
    };
    let e = eicar();
    let packed = deflated(&e);
    let eicar_sizes = (crc_of(&e), packed.len() as u32, e.len() as u32);
    let text = b"harmless text, nothing to see\r\n".to_vec();

    // Z1: a stored cover.bin holds the EICAR's local header; its central
    // record comes second, past an end record's count of 1 (and of 0).
    let hidden = raw_local("eicar.com", 0, 8, eicar_sizes, &packed);
    let inner = [text.clone(), hidden].concat();
    let inner_sizes = (crc_of(&inner), inner.len() as u32, inner.len() as u32);
    let cover = raw_local("cover.bin", 0, 0, inner_sizes, &inner);
    let eicar_at = (cover.len() - (inner.len() - text.len())) as u32;
    let directory = [
        raw_central("cover.bin", 0, 0, inner_sizes, 0),
        raw_central("eicar.com", 0, 8, eicar_sizes, eicar_at),
    ]
    .concat();
    for count in [1, 0] {
        let z = [
            cover.clone(),
            directory.clone(),
            raw_end(count, count, directory.len(), cover.len()),
        ]
        .concat();
        let out = judge(&z);
        assert_eq!(
            out.report.av,
            AvStatus::Infected,
            "count {count}: {:?}",
            out.findings
        );
    }
    // Z2: counts the zip library refuses (this disk 1, all 2; 0xFFFF
    // without ZIP64): read by hand.
    for (on_disk, total) in [(1, 2), (2, 1), (0xffff, 0xffff)] {
        let z = [
            cover.clone(),
            directory.clone(),
            raw_end(on_disk, total, directory.len(), cover.len()),
        ]
        .concat();
        let out = judge(&z);
        assert_eq!(
            out.report.av,
            AvStatus::Infected,
            "counts {on_disk}/{total}: {:?}",
            out.findings
        );
    }

    // walkCB CB1: the record past the count gives its offset in a ZIP64
    // field.
    let mut zip64_record = raw_central("eicar.com", 0, 8, eicar_sizes, u32::MAX);
    let mut field = 1u16.to_le_bytes().to_vec();
    field.extend_from_slice(&8u16.to_le_bytes());
    field.extend_from_slice(&u64::from(eicar_at).to_le_bytes());
    zip64_record[30..32].copy_from_slice(&(field.len() as u16).to_le_bytes());
    zip64_record.extend_from_slice(&field);
    let directory64 = [raw_central("cover.bin", 0, 0, inner_sizes, 0), zip64_record].concat();
    let z = [
        cover.clone(),
        directory64.clone(),
        raw_end(1, 1, directory64.len(), cover.len()),
    ]
    .concat();
    let out = judge(&z);
    assert_eq!(
        out.report.av,
        AvStatus::Infected,
        "ZIP64 offset: {:?}",
        out.findings
    );
    // walkCB CB8: a count of 0 behind a stub whose offsets were not
    // adjusted.
    let z = [
        b"#!/bin/sh\nexit 0\n".repeat(60),
        cover.clone(),
        directory.clone(),
        raw_end(0, 0, directory.len(), cover.len()),
    ]
    .concat();
    let out = judge(&z);
    assert_eq!(
        out.report.av,
        AvStatus::Infected,
        "stub, count 0: {:?}",
        out.findings
    );
    // walkCB CB6: a stored readme.txt of 0 octets by its local header,
    // whose central size (and a wrong CRC) covers an EICAR's local
    // header, which jar reads next.
    let notes_sizes = (crc_of(&text), text.len() as u32, text.len() as u32);
    let notes = raw_local("notes.txt", 0, 0, notes_sizes, &text);
    let empty = raw_local("readme.txt", 0, 0, (0, 0, 0), b"");
    let hidden = raw_local("eicar.com", 0, 8, eicar_sizes, &packed);
    let body = [notes.clone(), empty.clone(), hidden.clone()].concat();
    let covering = (0, hidden.len() as u32, hidden.len() as u32);
    let directory0 = [
        raw_central("notes.txt", 0, 0, notes_sizes, 0),
        raw_central("readme.txt", 0, 0, covering, notes.len() as u32),
    ]
    .concat();
    let z = [
        body.clone(),
        directory0.clone(),
        raw_end(2, 2, directory0.len(), body.len()),
    ]
    .concat();
    let out = judge(&z);
    assert_eq!(
        out.report.av,
        AvStatus::Infected,
        "local size 0: {:?}",
        out.findings
    );

    // walkBZ a07b: a ZIP64 locator that points elsewhere than at the ZIP64
    // end record right before it, which Python reads; with a count of 0
    // there too (walkCE CE2).
    for count in [2u64, 0] {
        let mut z = [cover.clone(), directory.clone()].concat();
        let zip64_end = z.len() as u64;
        z.extend_from_slice(b"PK\x06\x06");
        z.extend_from_slice(&44u64.to_le_bytes());
        for v in [45u16, 45] {
            z.extend_from_slice(&v.to_le_bytes());
        }
        z.extend_from_slice(&[0; 8]);
        for v in [count, count, directory.len() as u64, cover.len() as u64] {
            z.extend_from_slice(&v.to_le_bytes());
        }
        z.extend_from_slice(b"PK\x06\x07");
        z.extend_from_slice(&0u32.to_le_bytes());
        z.extend_from_slice(&(zip64_end / 2).to_le_bytes());
        z.extend_from_slice(&1u32.to_le_bytes());
        z.extend_from_slice(&raw_end(
            0xffff,
            0xffff,
            u32::MAX as usize,
            u32::MAX as usize,
        ));
        let out = judge(&z);
        assert_eq!(
            out.report.av,
            AvStatus::Infected,
            "ZIP64 locator, count {count}: {:?}",
            out.findings
        );
    }

    // Z3: encrypted by its central record only: jar and 7-Zip read it.
    let plain = raw_local("readme.txt", 0, 8, eicar_sizes, &packed);
    let record = raw_central("readme.txt", 1, 8, eicar_sizes, 0);
    let z = [
        plain.clone(),
        record.clone(),
        raw_end(1, 1, record.len(), plain.len()),
    ]
    .concat();
    let out = judge(&z);
    assert_eq!(out.report.av, AvStatus::Infected, "{:?}", out.findings);

    // Z4: a stored program whose central record says it is empty (sizes
    // and CRC 0): unzip writes its 14 octets without a word.
    let program = b"MZ\x90\x00program".to_vec();
    let first = raw_local(
        "notes.txt",
        0,
        0,
        (crc_of(&text), text.len() as u32, text.len() as u32),
        &text,
    );
    let second = raw_local(
        "invoice.pdf",
        0,
        0,
        (crc_of(&program), program.len() as u32, program.len() as u32),
        &program,
    );
    let directory = [
        raw_central(
            "notes.txt",
            0,
            0,
            (crc_of(&text), text.len() as u32, text.len() as u32),
            0,
        ),
        raw_central("invoice.pdf", 0, 0, (0, 0, 0), first.len() as u32),
    ]
    .concat();
    let body = [first, second].concat();
    let z = [
        body.clone(),
        directory.clone(),
        raw_end(2, 2, directory.len(), body.len()),
    ]
    .concat();
    let out = judge(&z);
    assert_eq!(out.report.av, AvStatus::Suspicious, "{:?}", out.findings);
    assert_eq!(out.report.viruses, ["Suspicious_Disguised_Executable"]);

    // Z5: a streamed zip (sizes in data descriptors) cut before its
    // central directory: jar and 7-Zip extract its members.
    let descriptor = |sizes: (u32, u32, u32)| {
        let mut d = b"PK\x07\x08".to_vec();
        for v in [sizes.0, sizes.1, sizes.2] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d
    };
    let text_packed = deflated(&text);
    let text_sizes = (crc_of(&text), text_packed.len() as u32, text.len() as u32);
    let streamed = [
        raw_local("notes.txt", 8, 8, (0, 0, 0), &text_packed),
        descriptor(text_sizes),
        raw_local("eicar.com", 8, 8, (0, 0, 0), &packed),
        descriptor(eicar_sizes),
        raw_local("stored.txt", 8, 0, (0, 0, 0), &text),
        descriptor((crc_of(&text), text.len() as u32, text.len() as u32)),
    ]
    .concat();
    let out = judge(&streamed);
    assert_eq!(out.report.av, AvStatus::Infected, "{:?}", out.findings);
    let paths: Vec<&str> = out.findings.iter().map(|f| f.path.as_str()).collect();
    assert!(paths.contains(&"w.zip/eicar.com"), "{paths:?}");

    // walkCB CB4: a thousand records of one stored member whose data
    // descriptor never comes, before many false ones: the header is read
    // once, and said once.
    let lost = [
        raw_local("x.txt", 8, 0, (0, 0, 0), b""),
        b"PK\x07\x08".repeat(20_000),
    ]
    .concat();
    let record = raw_central("x.txt", 8, 0, (0, 0, 0), 0);
    let records = record.repeat(1000);
    let z = [
        lost.clone(),
        records.clone(),
        raw_end(1, 2, records.len(), lost.len()),
    ]
    .concat();
    let out = judge(&z);
    let said = out
        .findings
        .iter()
        .filter(|f| f.name.contains("no data descriptor"))
        .count();
    assert_eq!(said, 1, "{:?}", out.findings);
}
