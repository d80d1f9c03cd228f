//! Giving up root (`[server] user`, `group`).
//!
//! Started as root, `mailward run`:
//!
//! 1. resolves the user and group ([`plan`]) before anything else, so a
//!    typo stops it at once;
//! 2. hands them the data directory and the admin socket's directory when
//!    it creates them, and the log file it opened ([`Switch::prepare`],
//!    [`Switch::hand_over`]); a data directory that exists and belongs to
//!    someone else is refused with the `chown` to run;
//! 3. locks the data directory (first, so a second start changes nothing)
//!    and hands the lock file over too;
//! 4. binds the SMTP listeners and the metrics port (ports below 1024 need
//!    root or CAP_NET_BIND_SERVICE);
//! 5. switches: supplementary groups (`initgroups`), then gid, then uid,
//!    and checks that the real, effective and saved ids are the new ones
//!    and that root cannot be taken back ([`Switch::apply`]);
//! 6. and only then opens the spool, loads the bases and reads mail.
//!
//! A configuration file run as root without `user` is refused: running a
//! mail gateway as root is a choice to write down (`user = "root"`). The
//! embedded default configuration (no `--config`) is a local trial on
//! 127.0.0.1 and runs as whoever started it. Not started as root, there is
//! nothing to switch: a `user` other than ours is said in the log.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

/// Why the switch cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("started as root, but server.user is not set: set [server] user = \"mailward\" (an unprivileged user it switches to once its ports are bound), or user = \"root\" to run as root anyway")]
    RootWithoutUser,
    #[error("server.user: there is no user {0:?} on this machine (create it: adduser --system --group {0})")]
    NoSuchUser(String),
    #[error(
        "server.group: there is no group {0:?} on this machine (create it: addgroup --system {0})"
    )]
    NoSuchGroup(String),
    #[error("cannot look up {what} {name:?}: {source}")]
    Lookup {
        what: &'static str,
        name: String,
        #[source]
        source: nix::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} belongs to uid {owner}, not to {user} (uid {uid}), which mailward runs as: chown -R {user}: {path}")]
    NotOwned {
        path: PathBuf,
        owner: u32,
        user: String,
        uid: u32,
    },
    #[error("cannot switch to user {user} (uid {uid}, gid {gid}): {step} failed: {source}")]
    Switch {
        user: String,
        uid: u32,
        gid: u32,
        step: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("switched to user {user}, but {what}: refusing to go on")]
    Check { user: String, what: String },
}

/// The user and group to become.
#[derive(Debug, Clone)]
pub struct Switch {
    pub user: String,
    pub uid: Uid,
    pub gid: Gid,
}

/// The name of the user this process runs as ("uid N" when it has none),
/// for messages that must say who could not read or write something. The
/// log writer says it for every line it cannot write, so the name is kept,
/// but with its uid: the process starts as root and switches.
pub fn current_user() -> String {
    static NAME: std::sync::Mutex<Option<(u32, String)>> = std::sync::Mutex::new(None);
    let uid = Uid::effective();
    if let Ok(known) = NAME.lock() {
        if let Some((_, name)) = known.as_ref().filter(|(u, _)| *u == uid.as_raw()) {
            return name.clone();
        }
    }
    let name = User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name);
    if let Ok(mut known) = NAME.lock() {
        *known = Some((uid.as_raw(), name.clone()));
    }
    name
}

/// What the process should do about its user: `None` to stay as it is.
/// `embedded` is true on the embedded default configuration.
pub fn plan(
    user: Option<&str>,
    group: Option<&str>,
    embedded: bool,
) -> Result<Option<Switch>, PrivilegeError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let name = match user {
        None if embedded => return Ok(None),
        None => return Err(PrivilegeError::RootWithoutUser),
        Some(name) => name,
    };
    let found = User::from_name(name)
        .map_err(|source| PrivilegeError::Lookup {
            what: "user",
            name: name.to_string(),
            source,
        })?
        .ok_or_else(|| PrivilegeError::NoSuchUser(name.to_string()))?;
    let gid = match group {
        None => found.gid,
        Some(g) => {
            Group::from_name(g)
                .map_err(|source| PrivilegeError::Lookup {
                    what: "group",
                    name: g.to_string(),
                    source,
                })?
                .ok_or_else(|| PrivilegeError::NoSuchGroup(g.to_string()))?
                .gid
        }
    };
    if found.uid.is_root() && gid.as_raw() == 0 {
        // user = "root": written down, nothing to switch.
        return Ok(None);
    }
    Ok(Some(Switch {
        user: name.to_string(),
        uid: found.uid,
        gid,
    }))
}

/// The accounts a configuration names (`server.user`, `server.group`) that
/// this machine does not have, as (key, problem). `mailward run` started
/// as root refuses them; `check-config` warns, since a configuration may
/// be checked on another machine than the one that runs it.
pub fn missing_accounts(user: Option<&str>, group: Option<&str>) -> Vec<(&'static str, String)> {
    let mut missing = Vec::new();
    if let Some(name) = user {
        if matches!(User::from_name(name), Ok(None)) {
            missing.push((
                "user",
                PrivilegeError::NoSuchUser(name.to_string()).to_string(),
            ));
        }
    }
    if let Some(name) = group {
        if matches!(Group::from_name(name), Ok(None)) {
            missing.push((
                "group",
                PrivilegeError::NoSuchGroup(name.to_string()).to_string(),
            ));
        }
    }
    missing
}

/// Why `server.user` (with `server.group`, and the supplementary groups
/// `run` gives it by `initgroups`) could not read `path` after the switch,
/// when this process is root and would switch: `check-config` run by root
/// reads every file, and said valid a key (0600 root, as in
/// /etc/ssl/private) that `run` then failed to read (walkBJ F1). None when
/// it can, or when nothing would switch.
pub fn unreadable_after_switch(
    path: &Path,
    user: Option<&str>,
    group: Option<&str>,
) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let switch = plan(user, group, false).ok()??;
    let name = std::ffi::CString::new(switch.user.as_str()).ok()?;
    let mut gids: Vec<u32> = nix::unistd::getgrouplist(&name, switch.gid)
        .map(|g| g.iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default();
    gids.push(switch.gid.as_raw());
    let uid = switch.uid.as_raw();
    // `bits` is the owner's bit: 0o4 read for the file, 0o1 search for
    // the directories above it.
    let allowed = |m: &std::fs::Metadata, bit: u32| {
        let mode = m.mode();
        (m.uid() == uid && mode & (bit << 6) != 0)
            || (m.uid() != uid && gids.contains(&m.gid()) && mode & (bit << 3) != 0)
            || (m.uid() != uid && !gids.contains(&m.gid()) && mode & bit != 0)
    };
    let absolute = std::path::absolute(path).ok()?;
    let refused = absolute
        .ancestors()
        .skip(1)
        .find(|dir| std::fs::metadata(dir).is_ok_and(|m| !allowed(&m, 0o1)))
        .map(|dir| {
            format!(
                "cannot enter {} (it needs search, x, permission)",
                dir.display()
            )
        })
        .or_else(|| {
            let m = std::fs::metadata(&absolute).ok()?;
            (!allowed(&m, 0o4)).then(|| {
                format!(
                    "cannot read it ({:o} {}:{})",
                    m.mode() & 0o7777,
                    user_name(m.uid()),
                    gid_name(m.gid())
                )
            })
        })?;
    Some(format!(
        "{}: mailward run switches to {} (server.user) and then {refused}: make the file readable and its directories enterable by that user or its group (Debian: adduser {} ssl-cert, with the key 0640 root:ssl-cert)",
        path.display(),
        switch.user,
        switch.user
    ))
}

/// The name of user `uid`, or `uid N` when it has none.
pub fn user_name(uid: u32) -> String {
    User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name)
}

fn gid_name(gid: u32) -> String {
    Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |g| g.name)
}

/// The `user` of a configuration not started as root, when it names
/// someone else: a sentence for the log, or `None`.
pub fn mismatch(user: Option<&str>) -> Option<String> {
    let wanted = user?;
    if Uid::effective().is_root() {
        return None;
    }
    let me = User::from_uid(Uid::effective()).ok().flatten()?;
    (me.name != wanted).then(|| {
        format!(
            "server.user is {wanted:?}, but mailward was not started as root and runs as {:?}; there is nothing to switch",
            me.name
        )
    })
}

impl Switch {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PrivilegeError + '_ {
        move |source| PrivilegeError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Makes `dir` (mode `mode`) for the user when it is missing; refuses
    /// one that exists and belongs to someone else.
    fn own_dir(&self, dir: &Path, mode: u32) -> Result<(), PrivilegeError> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(dir) {
            Ok(meta) => {
                if meta.uid() != self.uid.as_raw() {
                    return Err(PrivilegeError::NotOwned {
                        path: dir.to_path_buf(),
                        owner: meta.uid(),
                        user: self.user.clone(),
                        uid: self.uid.as_raw(),
                    });
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::files::ensure_dir(dir, mode).map_err(Self::io(dir))?;
                self.hand_over(dir)
            }
            Err(e) => Err(Self::io(dir)(e)),
        }
    }

    /// Refuses a directory right under the data directory (the spool,
    /// quarantine, archive, bases, ...) that belongs to someone else: a
    /// backup restored with `cp -r` as root is the usual case, and the
    /// user would otherwise fail on it later with a bare "Permission
    /// denied", after the switch, without the `chown` to run.
    fn own_subdirs(&self, data_dir: &Path) -> Result<(), PrivilegeError> {
        use std::os::unix::fs::MetadataExt;
        let Ok(entries) = std::fs::read_dir(data_dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() && meta.uid() != self.uid.as_raw() {
                return Err(PrivilegeError::NotOwned {
                    path,
                    owner: meta.uid(),
                    user: self.user.clone(),
                    uid: self.uid.as_raw(),
                });
            }
        }
        Ok(())
    }

    /// Gives the user what it must write before the switch: the data
    /// directory and the admin socket's directory.
    pub fn prepare(&self, data_dir: &Path, admin_socket: &Path) -> Result<(), PrivilegeError> {
        self.own_dir(data_dir, crate::files::GROUP_DIR)?;
        self.own_subdirs(data_dir)?;
        if let Some(dir) = admin_socket.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                self.own_dir(dir, crate::files::GROUP_DIR)?;
            }
        }
        Ok(())
    }

    /// Makes the directory of a file the daemon opens before the switch
    /// (the log file) the user's when it is missing: made by root, it
    /// would be closed to the user, who could then neither rotate the log
    /// nor create the raw records file beside it. An existing directory
    /// (/var/log itself, say) is left as it is.
    pub fn prepare_dir_of(&self, file: &Path) -> Result<(), PrivilegeError> {
        match file.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) if !dir.exists() => self.own_dir(dir, crate::files::GROUP_DIR),
            _ => Ok(()),
        }
    }

    /// Makes a file the daemon appends to after the switch (the raw
    /// records) the user's: its directory when it has to be made, and the
    /// file itself, created empty if missing. Without it a directory made
    /// by root (the log's, when both live there) lets the user write no
    /// raw record at all.
    pub fn prepare_file(&self, path: &Path, mode: u32) -> Result<(), PrivilegeError> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                self.own_dir(dir, crate::files::GROUP_DIR)?;
            }
        }
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(mode)
            .open(path)
            .map_err(Self::io(path))?;
        self.hand_over(path)
    }

    /// Makes `path` the user's (and the group's).
    pub fn hand_over(&self, path: &Path) -> Result<(), PrivilegeError> {
        nix::unistd::chown(path, Some(self.uid), Some(self.gid)).map_err(|e| PrivilegeError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::from(e),
        })
    }

    /// Switches the whole process (glibc applies set*id to every thread)
    /// and checks the result.
    pub fn apply(&self) -> Result<(), PrivilegeError> {
        let fail = |step: &'static str| {
            let (user, uid, gid) = (self.user.clone(), self.uid.as_raw(), self.gid.as_raw());
            move |source| PrivilegeError::Switch {
                user,
                uid,
                gid,
                step,
                source,
            }
        };
        let name = CString::new(self.user.as_str()).map_err(|_| PrivilegeError::Check {
            user: self.user.clone(),
            what: "its name holds a NUL byte".into(),
        })?;
        nix::unistd::initgroups(&name, self.gid).map_err(fail("initgroups"))?;
        nix::unistd::setgid(self.gid).map_err(fail("setgid"))?;
        nix::unistd::setuid(self.uid).map_err(fail("setuid"))?;
        let check = |ok: bool, what: String| {
            if ok {
                Ok(())
            } else {
                Err(PrivilegeError::Check {
                    user: self.user.clone(),
                    what,
                })
            }
        };
        let (ruid, euid) = (Uid::current(), Uid::effective());
        let (rgid, egid) = (Gid::current(), Gid::effective());
        check(
            ruid == self.uid && euid == self.uid,
            format!("the uids are {ruid}/{euid}"),
        )?;
        check(
            rgid == self.gid && egid == self.gid,
            format!("the gids are {rgid}/{egid}"),
        )?;
        if !self.uid.is_root() {
            check(
                nix::unistd::setuid(Uid::from_raw(0)).is_err(),
                "root could be taken back".into(),
            )?;
        }
        Ok(())
    }
}

/// What a command run as root creates in the gateway's own directory
/// (`spam learn` in `DATA_DIR/spam`) goes to the owner of the data
/// directory when the guard is dropped, as if that user had made it
/// (walkN: a root `spam learn` left root-owned files that the daemon's
/// user could not lock, and the next start refused). The command itself
/// stays root, so it can still read the files it was given (`~/Junk`).
/// Nothing happens when not root or when the data directory is root's.
pub struct OwnedByDataDir {
    dir: PathBuf,
    owner: Option<(Uid, Gid)>,
}

impl OwnedByDataDir {
    pub fn new(dir: &Path, data_dir: &Path) -> OwnedByDataDir {
        use std::os::unix::fs::MetadataExt as _;
        let owner = Uid::effective()
            .is_root()
            .then(|| std::fs::metadata(data_dir).ok())
            .flatten()
            .filter(|m| m.uid() != 0)
            .map(|m| (Uid::from_raw(m.uid()), Gid::from_raw(m.gid())));
        OwnedByDataDir {
            dir: dir.to_path_buf(),
            owner,
        }
    }

    /// Hands over `dir` and the files in it that root owns.
    fn hand_over(&self) -> Vec<(PathBuf, std::io::Error)> {
        use std::os::unix::fs::MetadataExt as _;
        let Some((uid, gid)) = self.owner else {
            return Vec::new();
        };
        let mut failed = Vec::new();
        let mut give = |path: &Path| {
            let root_owned =
                std::fs::symlink_metadata(path).is_ok_and(|m| m.uid() == 0 && !m.is_symlink());
            if root_owned {
                if let Err(e) = nix::unistd::chown(path, Some(uid), Some(gid)) {
                    failed.push((path.to_path_buf(), std::io::Error::from(e)));
                }
            }
        };
        give(&self.dir);
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                give(&e.path());
            }
        }
        failed
    }
}

impl Drop for OwnedByDataDir {
    fn drop(&mut self) {
        for (path, e) in self.hand_over() {
            eprintln!(
                "mailward: warning: {} stays root's: {e}; the daemon's user cannot write it: chown it to the owner of the data directory",
                path.display()
            );
        }
    }
}
