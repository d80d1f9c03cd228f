//! Test samples built in the test, never stored whole in the repository:
//! the EICAR anti-virus test file (from two halves), zip archives, a zip
//! bomb, and the peak memory of a process for the bounds that go with them.

use std::io::{Cursor, Write as _};

use anyhow::{Context, Result};

/// The EICAR anti-virus test file (68 bytes), from two halves.
pub fn eicar() -> Vec<u8> {
    let head = ["X5O!P%@AP[4", "\\PZX54(P^)7CC)7}$"].concat();
    let tail = ["EICAR-STANDARD-", "ANTIVIRUS-TEST-FILE!$H+H*"].concat();
    [head, tail].concat().into_bytes()
}

/// A zip archive of `files` (deflated).
pub fn zip_of(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in files {
        w.start_file(*name, zip::write::SimpleFileOptions::default())?;
        w.write_all(data)?;
    }
    Ok(w.finish()?.into_inner())
}

/// A message with a short text part and `invoice.zip` holding the EICAR
/// test file: what the policy and Postfix tests send as infected mail (the
/// default action removes the zip and keeps the text).
pub fn infected_message(subject: &str, boundary: &str) -> Result<Vec<u8>> {
    let zip = zip_of(&[("eicar.com", &eicar())])?;
    Ok(crate::mime::multipart(
        subject,
        boundary,
        &[
            crate::mime::Part::text("Please see the attachment.\r\n"),
            crate::mime::Part::attachment("invoice.zip", "application/zip", &zip),
        ],
    ))
}

/// A zip of one member `zeros.bin`, `mib` MiB of zeros (about 1 KiB packed
/// per MiB).
pub fn zip_bomb(mib: usize) -> Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("zeros.bin", zip::write::SimpleFileOptions::default())?;
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        w.write_all(&chunk)?;
    }
    Ok(w.finish()?.into_inner())
}

/// The peak resident memory (VmHWM) of process `pid`, in bytes.
pub fn vm_hwm(pid: u32) -> Result<u64> {
    proc_status_kib(pid, "VmHWM:").map(|k| k * 1024)
}

/// The resident memory now (VmRSS) of process `pid`, in bytes.
pub fn vm_rss(pid: u32) -> Result<u64> {
    proc_status_kib(pid, "VmRSS:").map(|k| k * 1024)
}

fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    line.split_whitespace()
        .nth(1)
        .with_context(|| format!("{field} without a value"))?
        .parse()
        .with_context(|| format!("{field} is not a number: {line}"))
}
