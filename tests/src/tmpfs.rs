//! A small tmpfs for tests that fill a disk: mounted on a directory of the
//! test, unmounted on drop. Mounting needs root (the test command runs as
//! root in CI, like the package installs).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::tools::{is_root, output_text};

/// A mounted tmpfs.
pub struct Tmpfs {
    /// Where it is mounted.
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax: "8m") on `path`, creating
    /// the directory.
    pub fn mount(path: &Path, size: &str) -> Result<Tmpfs> {
        if !is_root() {
            bail!(
                "mounting a tmpfs to fill a disk needs root: run the tests as root (tests/run does)"
            );
        }
        std::fs::create_dir_all(path)?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .context("running mount (package mount)")?;
        if !out.status.success() {
            bail!("mount -t tmpfs failed: {}", output_text(&out));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Bytes free on it.
    pub fn free(&self) -> Result<u64> {
        let st = nix::sys::statvfs::statvfs(&self.path)?;
        #[allow(clippy::unnecessary_cast)]
        Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a daemon killed a moment ago may still hold files open.
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
    }
}
