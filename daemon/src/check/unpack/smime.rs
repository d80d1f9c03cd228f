//! S/MIME blobs (`application/pkcs7-mime`, `smime.p7m`): a CMS
//! `ContentInfo` (RFC 5652) in DER or BER. An opaque-signed message
//! (`smime-type=signed-data`, `openssl smime -sign -nodetach`) carries the
//! whole MIME entity inside the blob, in the `eContent` OCTET STRING of
//! its `SignedData`; mail clients unpack it and show its attachments,
//! whoever signed it, so the scan must look inside too (walkAJ 4). This
//! is a small walk over the encoding: no signature is checked (a virus is
//! a virus whoever signed it). Encrypted content (`EnvelopedData`,
//! `AuthEnvelopedData`) cannot be read without the recipient's key.

/// What a CMS blob holds, for the scan.
#[derive(Debug, PartialEq, Eq)]
pub enum Cms {
    /// Signed data with its content inside: the bytes of the MIME entity.
    Signed(Vec<u8>),
    /// Signed data without content (a detached signature, `smime.p7s`):
    /// nothing more to look at.
    Detached,
    /// Encrypted content: the scan cannot look inside.
    Encrypted,
    /// Another content type (compressed, digested, ...) or a blob that
    /// starts as CMS and cannot be read: the scan did not look inside.
    Unreadable(&'static str),
}

/// The DER of the content type OIDs (tag, length and value).
const SIGNED_DATA: &[u8] = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02";
const ENVELOPED_DATA: &[u8] = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x03";
const AUTH_ENVELOPED_DATA: &[u8] = b"\x06\x0b\x2a\x86\x48\x86\xf7\x0d\x01\x09\x10\x01\x17";
/// 1.2.840.113549.1.7 (PKCS #7 content types) and
/// 1.2.840.113549.1.9.16.1 (S/MIME content types), as the OID's
/// encoding starts.
const PKCS7_PREFIX: &[u8] = b"\x2a\x86\x48\x86\xf7\x0d\x01\x07";
const SMIME_CT_PREFIX: &[u8] = b"\x2a\x86\x48\x86\xf7\x0d\x01\x09\x10\x01";

/// Nesting of BER elements read at most (a SignedData is 4 deep to its
/// content; constructed OCTET STRINGs add a level or two).
const MAX_DEPTH: u32 = 16;

/// One BER element: its tag byte, and its content (for an element of
/// indefinite length, the content without its end-of-contents octets).
struct Element<'a> {
    tag: u8,
    content: &'a [u8],
    /// The bytes after the element.
    rest: &'a [u8],
}

/// Reads the element at the start of `data` (None: not BER, or cut
/// short). Tags above 30 (the long form) are not used by CMS here.
fn element(data: &[u8], depth: u32) -> Option<Element<'_>> {
    let (&tag, after) = data.split_first()?;
    if tag & 0x1f == 0x1f || depth > MAX_DEPTH {
        return None;
    }
    let (&first, after) = after.split_first()?;
    if first == 0x80 {
        // Indefinite length (constructed only): elements up to 00 00.
        if tag & 0x20 == 0 {
            return None;
        }
        let mut at = after;
        loop {
            if at.starts_with(&[0, 0]) {
                let len = after.len() - at.len();
                return Some(Element {
                    tag,
                    content: &after[..len],
                    rest: &at[2..],
                });
            }
            at = element(at, depth + 1)?.rest;
        }
    }
    let (len, after) = if first < 0x80 {
        (first as usize, after)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || after.len() < n {
            return None;
        }
        let len = after[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &after[n..])
    };
    if len > after.len() {
        return None;
    }
    Some(Element {
        tag,
        content: &after[..len],
        rest: &after[len..],
    })
}

/// The elements inside a constructed element's content, in order.
fn children(content: &[u8], depth: u32) -> Option<Vec<Element<'_>>> {
    let mut out = Vec::new();
    let mut at = content;
    while !at.is_empty() {
        let e = element(at, depth)?;
        at = e.rest;
        out.push(e);
    }
    Some(out)
}

/// The bytes of an OCTET STRING, primitive (tag 0x04) or constructed
/// (0x24: the concatenation of the strings inside, as BER streams write
/// a long one).
fn octets(e: &Element<'_>, depth: u32, out: &mut Vec<u8>) -> Option<()> {
    match e.tag {
        0x04 => {
            out.extend_from_slice(e.content);
            Some(())
        }
        0x24 if depth <= MAX_DEPTH => {
            for c in children(e.content, depth + 1)? {
                octets(&c, depth + 1, out)?;
            }
            Some(())
        }
        _ => None,
    }
}

/// Whether `data` starts as a CMS `ContentInfo`: a SEQUENCE whose first
/// element is a PKCS #7 or S/MIME content type OID. Cheap: the first few
/// bytes decide.
pub fn is_cms(data: &[u8]) -> bool {
    if data.first() != Some(&0x30) {
        return false;
    }
    // The SEQUENCE's length takes 1 to 5 bytes; then the OID.
    let head = &data[..data.len().min(16)];
    (2..=6).any(|at| {
        head.get(at..).is_some_and(|oid| {
            oid.len() >= 2
                && oid[0] == 0x06
                && (oid[2..].starts_with(PKCS7_PREFIX) || oid[2..].starts_with(SMIME_CT_PREFIX))
        })
    })
}

/// The tag and length of the element at the start of `data` (None for
/// an indefinite length) and the bytes after its header: unlike
/// [`element`], its content need not be all there.
fn head(data: &[u8]) -> Option<(u8, Option<usize>, &[u8])> {
    let (&tag, after) = data.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, after) = after.split_first()?;
    if first == 0x80 {
        return (tag & 0x20 != 0).then_some((tag, None, after));
    }
    if first < 0x80 {
        return Some((tag, Some(first as usize), after));
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 || after.len() < n {
        return None;
    }
    let len = after[..n]
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | b as usize);
    Some((tag, Some(len), &after[n..]))
}

/// Whether `data` starts as a detached signature: a SignedData whose
/// `encapContentInfo` ends right after its content type, without
/// `eContent`. Read as a stream, from the front, without the rest of the
/// blob (the certificates and signatures that follow): a detached
/// signature carries no content to look into, so damage further on
/// (Outlook Express's BER signature cut short in a bounce, walkAL 2)
/// hides nothing.
fn starts_detached(data: &[u8]) -> Option<()> {
    let (tag, _, rest) = head(data)?;
    (tag == 0x30).then_some(())?;
    let oid = element(rest, 1).filter(|e| e.tag == 0x06)?;
    (oid.content.len() + 2 == SIGNED_DATA.len() && oid.content == &SIGNED_DATA[2..])
        .then_some(())?;
    let (tag, _, rest) = head(oid.rest)?;
    (tag == 0xa0).then_some(())?;
    let (tag, _, rest) = head(rest)?;
    (tag == 0x30).then_some(())?;
    // version, digestAlgorithms, then encapContentInfo
    let version = element(rest, 3).filter(|e| e.tag == 0x02)?;
    let algorithms = element(version.rest, 3).filter(|e| e.tag == 0x31)?;
    let (tag, len, rest) = head(algorithms.rest)?;
    (tag == 0x30).then_some(())?;
    let content_type = element(rest, 4).filter(|e| e.tag == 0x06)?;
    let ends = match len {
        Some(len) => len == rest.len() - content_type.rest.len(),
        None => content_type.rest.starts_with(&[0, 0]),
    };
    ends.then_some(())
}

/// What the CMS blob `data` holds ([`is_cms`] said it is one).
pub fn read(data: &[u8]) -> Cms {
    if starts_detached(data).is_some() {
        return Cms::Detached;
    }
    let Some(info) = element(data, 0).filter(|e| e.tag == 0x30) else {
        return Cms::Unreadable("damaged S/MIME data");
    };
    let Some(parts) = children(info.content, 1) else {
        return Cms::Unreadable("damaged S/MIME data");
    };
    let Some(kind) = parts.first().filter(|p| p.tag == 0x06) else {
        return Cms::Unreadable("damaged S/MIME data");
    };
    let oid: Vec<u8> = [&[0x06, kind.content.len() as u8], kind.content].concat();
    if oid == ENVELOPED_DATA || oid == AUTH_ENVELOPED_DATA {
        return Cms::Encrypted;
    }
    if oid != SIGNED_DATA {
        return Cms::Unreadable("not unpacked: S/MIME content other than signed or encrypted");
    }
    match signed_content(&parts) {
        Some(Some(content)) => Cms::Signed(content),
        Some(None) => Cms::Detached,
        None => Cms::Unreadable("damaged S/MIME signed data"),
    }
}

/// The `eContent` of a SignedData `ContentInfo`'s elements (Some(None):
/// none, a detached signature; None: not readable).
fn signed_content(parts: &[Element<'_>]) -> Option<Option<Vec<u8>>> {
    // content [0] EXPLICIT SignedData
    let explicit = parts.get(1).filter(|p| p.tag == 0xa0)?;
    let signed = element(explicit.content, 2).filter(|e| e.tag == 0x30)?;
    // SignedData: version, digestAlgorithms, encapContentInfo, ...
    let fields = children(signed.content, 3)?;
    let encap = fields.get(2).filter(|f| f.tag == 0x30)?;
    let encap = children(encap.content, 4)?;
    // eContentType, then eContent [0] EXPLICIT OCTET STRING OPTIONAL
    let Some(explicit) = encap.get(1) else {
        return Some(None);
    };
    if explicit.tag != 0xa0 {
        return None;
    }
    let mut out = Vec::new();
    for s in children(explicit.content, 5)? {
        octets(&s, 5, &mut out)?;
    }
    Some(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DER of one element (definite length).
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let len = content.len();
        let mut out = vec![tag];
        if len < 0x80 {
            out.push(len as u8);
        } else {
            out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    fn signed(encap_content: &[u8]) -> Vec<u8> {
        let id_data = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x01";
        let encap = der(0x30, &[id_data.as_slice(), encap_content].concat());
        let sd = der(
            0x30,
            &[der(0x02, b"\x01"), der(0x31, &[]), encap, der(0x31, &[])].concat(),
        );
        der(0x30, &[SIGNED_DATA, &der(0xa0, &sd)].concat())
    }

    #[test]
    fn the_content_of_signed_data_is_taken_out() {
        let entity = b"Content-Type: text/plain\r\n\r\nhello\r\n".repeat(10);
        let blob = signed(&der(0xa0, &der(0x04, &entity)));
        assert!(is_cms(&blob));
        assert_eq!(read(&blob), Cms::Signed(entity.clone()));
        // BER as streams write it: indefinite lengths, the content in
        // chunks of a constructed OCTET STRING.
        let id_data = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x01";
        let chunks = [der(0x04, &entity[..100]), der(0x04, &entity[100..])].concat();
        let stream = [
            b"\x30\x80".as_slice(),
            SIGNED_DATA,
            b"\xa0\x80\x30\x80",
            &der(0x02, b"\x01"),
            &der(0x31, &[]),
            b"\x30\x80",
            id_data,
            b"\xa0\x80\x24\x80",
            &chunks,
            b"\x00\x00\x00\x00\x00\x00",
            &der(0x31, &[]),
            b"\x00\x00\x00\x00\x00\x00",
        ]
        .concat();
        assert!(is_cms(&stream));
        assert_eq!(read(&stream), Cms::Signed(entity));
        // A detached signature holds no content.
        assert_eq!(read(&signed(&[])), Cms::Detached);
        // Known as one from its start, DER or BER, whatever follows
        // (walkAL 2: Outlook Express signatures damaged further on).
        let der_detached = signed(&[]);
        let ber_detached = [
            b"\x30\x80".as_slice(),
            SIGNED_DATA,
            b"\xa0\x80\x30\x80",
            &der(0x02, b"\x01"),
            &der(0x31, &[]),
            b"\x30\x80",
            id_data,
            b"\x00\x00\xa0\x80\x30\x82\x03\x00garbage",
        ]
        .concat();
        for blob in [&der_detached[..der_detached.len() - 2], &ber_detached[..]] {
            assert_eq!(read(blob), Cms::Detached, "{blob:02x?}");
        }
        // Content inside, cut short: not detached.
        let cut = &stream[..stream.len() / 2];
        assert_eq!(read(cut), Cms::Unreadable("damaged S/MIME data"));
    }

    #[test]
    fn encrypted_and_damaged_blobs_are_said_so() {
        let enveloped = der(
            0x30,
            &[ENVELOPED_DATA, &der(0xa0, &der(0x30, &[]))].concat(),
        );
        assert!(is_cms(&enveloped));
        assert_eq!(read(&enveloped), Cms::Encrypted);
        let blob = signed(&der(0xa0, &der(0x04, b"hello")));
        assert!(matches!(read(&blob[..blob.len() - 3]), Cms::Unreadable(_)));
        assert!(!is_cms(b"PK\x03\x04"));
        assert!(!is_cms(b"0\x03\x02\x01\x01"));
        // Nesting without end is refused, not followed.
        let deep = [b"\x30\x80".repeat(10_000), vec![0; 20_000]].concat();
        assert!(element(&deep, 0).is_none());
    }
}
