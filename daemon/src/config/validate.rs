//! From raw TOML values to the typed [`Config`]: every key is converted and
//! checked, defaults (those of DESIGN section 4) fill in what is absent, and
//! every problem is collected with its key and line, so an operator sees all
//! of them at once. Cross-key rules (`min_backoff <= max_backoff`, TLS files,
//! ...) are checked at the end, on the typed values.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use toml::Value;

use super::locate::{KeyPath, Locator};
use super::pattern::{is_domain, DomainPattern, Pattern};
use super::raw::*;
use super::rules::{parse_net, Matcher, Rule};
use super::types::*;
use super::units::{ByteSize, Dur, DURATION_EXAMPLE, SIZE_EXAMPLE};
use super::ConfigProblem;

/// Collects problems while the configuration is converted.
pub struct Ctx<'a> {
    locator: &'a Locator,
    origin: &'a str,
    /// Everything found wrong so far.
    pub problems: Vec<ConfigProblem>,
    /// What is valid but most likely not meant ([`Config::warnings`]).
    pub warnings: Vec<ConfigProblem>,
}

/// The longest problem said whole, in octets.
const MAX_PROBLEM: usize = 600;

/// The longest key said whole, in octets: the longest real one
/// (`route[12].tls_verify_hostname`) is a tenth of it.
const MAX_KEY: usize = 200;

/// A problem cut in its middle past [`MAX_PROBLEM`] octets: it quotes the
/// value given, and a 100 kB value was echoed whole, a screenful per
/// mistake (walkAW F7). The start names what is wrong and the end says
/// what to give; the middle is the value.
fn bounded(problem: String) -> String {
    cut_middle(problem, MAX_PROBLEM)
}

/// A key cut in its middle past [`MAX_KEY`] octets: a key or table name
/// is the file's text too, and a 100 kB one (a binary pasted into the
/// file) was printed whole (walkAZ F3).
fn bounded_key(key: String) -> String {
    cut_middle(key, MAX_KEY)
}

/// `text` whole up to `max` octets, else its first two thirds and its last
/// third of `max`, on character boundaries, with how much is left out.
fn cut_middle(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let head = crate::text::cut(&text, max * 2 / 3);
    let mut tail_at = text.len() - max / 3;
    while !text.is_char_boundary(tail_at) {
        tail_at += 1;
    }
    let cut = tail_at - head.len();
    format!("{head}...({cut} octets left out)...{}", &text[tail_at..])
}

impl<'a> Ctx<'a> {
    pub fn new(locator: &'a Locator, origin: &'a str) -> Ctx<'a> {
        Ctx {
            locator,
            origin,
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// A warning about the key at `path`, on the line where it is written.
    fn warn(&mut self, path: &KeyPath, problem: impl Into<String>) {
        self.warnings.push(ConfigProblem {
            file: self.origin.to_string(),
            line: self.locator.line_of(path),
            key: bounded_key(path.to_string()),
            problem: bounded(problem.into()),
        });
    }

    /// A problem with `key`, at a line given explicitly.
    pub fn report_line(&mut self, line: usize, key: String, problem: impl Into<String>) {
        self.problems.push(ConfigProblem {
            file: self.origin.to_string(),
            line,
            key: bounded_key(key),
            problem: bounded(problem.into()),
        });
    }

    /// A problem with the key at `path`, on the line where it is written.
    pub fn report(&mut self, path: &KeyPath, problem: impl Into<String>) {
        let line = self.locator.line_of(path);
        self.report_line(line, path.to_string(), problem);
    }

    /// A problem with element `index` of the list at `path`: the key is the
    /// list's, the line the element's.
    fn report_elem(&mut self, path: &KeyPath, index: usize, problem: impl Into<String>) {
        let line = self.locator.line_of(&path.index(index));
        self.report_line(line, path.to_string(), problem);
    }

    /// Converts a single value; `None` when it is absent or wrong (and then
    /// reported).
    fn one<T>(
        &mut self,
        path: &KeyPath,
        value: Option<&Value>,
        convert: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        match convert(value?) {
            Ok(v) => Some(v),
            Err(problem) => {
                self.report(path, problem);
                None
            }
        }
    }

    /// Converts a list element by element, reporting each wrong element on
    /// its own line and keeping the good ones; `None` when the list is
    /// absent or not a list.
    fn list<T>(
        &mut self,
        path: &KeyPath,
        value: Option<&Value>,
        convert: impl Fn(&Value) -> Result<T, String>,
    ) -> Option<Vec<T>> {
        let items = match value? {
            Value::Array(items) => items,
            other => {
                self.report(path, format!("expected a list in [ ], got {}", show(other)));
                return None;
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match convert(item) {
                Ok(v) => out.push(v),
                Err(problem) => self.report_elem(path, i, problem),
            }
        }
        Some(out)
    }

    /// Converts a table of values, reporting each wrong entry on its line.
    fn map<T>(
        &mut self,
        path: &KeyPath,
        value: Option<&Value>,
        convert: impl Fn(&str, &Value) -> Result<T, String>,
    ) -> Option<BTreeMap<String, T>> {
        let table = match value? {
            Value::Table(t) => t,
            other => {
                self.report(
                    path,
                    format!(
                        "expected a table like {{ key = value }}, got {}",
                        show(other)
                    ),
                );
                return None;
            }
        };
        let mut out = BTreeMap::new();
        for (k, v) in table {
            match convert(k, v) {
                Ok(v) => {
                    out.insert(k.clone(), v);
                }
                Err(problem) => self.report(&path.key(k), problem),
            }
        }
        Some(out)
    }
}

// ---------------------------------------------------------------------------
// Value converters: each returns the whole problem text on error.

/// A value as written, shortened for messages.
fn show(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 60 {
        let short: String = text.chars().take(57).collect();
        format!("{short}...")
    } else {
        text
    }
}

fn boolean(v: &Value) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| format!("expected true or false, got {}", show(v)))
}

fn uint32(v: &Value) -> Result<u32, String> {
    v.as_integer()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            format!(
                "expected a whole number from 0 to {}, got {}",
                u32::MAX,
                show(v)
            )
        })
}

fn uint64(v: &Value) -> Result<u64, String> {
    v.as_integer()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| format!("expected a whole number from 0 up, got {}", show(v)))
}

fn text(v: &Value) -> Result<String, String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("expected a string, got {}", show(v)))
}

/// A string parsed by `parse`, whose error is the whole message; anything
/// else is "expected EXPECTED, got ...".
fn parsed<T>(
    expected: &'static str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> impl Fn(&Value) -> Result<T, String> {
    move |v| match v.as_str() {
        Some(s) => parse(s),
        None => Err(format!("expected {expected}, got {}", show(v))),
    }
}

fn dur(v: &Value) -> Result<Dur, String> {
    parsed(DURATION_EXAMPLE, |s| {
        s.parse::<Dur>().map_err(|e| e.to_string())
    })(v)
}

fn size(v: &Value) -> Result<ByteSize, String> {
    if let Some(n) = v.as_integer() {
        return u64::try_from(n)
            .map(ByteSize)
            .map_err(|_| format!("expected {SIZE_EXAMPLE}, got {}", show(v)));
    }
    parsed(SIZE_EXAMPLE, |s| {
        s.parse::<ByteSize>().map_err(|e| e.to_string())
    })(v)
}

/// A store's `max_size` (quarantine, archive): 0 is refused. Elsewhere 0
/// often means "no limit" (Postfix's `message_size_limit`); here it would
/// remove each entry as soon as it is written, quarantined mail included
/// (walkAW F22).
fn store_size(v: &Value) -> Result<ByteSize, String> {
    match size(v)? {
        ByteSize(0) => Err(
            "0 would remove every entry as soon as it is stored (it is a cap, not \"no limit\"): give the most the store may hold, like \"10GiB\""
                .to_string(),
        ),
        s => Ok(s),
    }
}

fn path(v: &Value) -> Result<PathBuf, String> {
    parsed("a path", |s| {
        if s.is_empty() {
            Err("expected a path, got \"\"".to_string())
        } else {
            Ok(PathBuf::from(s))
        }
    })(v)
}

/// The longest path a unix socket may have (`sun_path` holds 108 bytes
/// with the terminating NUL on Linux).
const MAX_SOCKET_PATH: usize = 107;

fn fits_a_socket(p: &Path) -> Result<(), String> {
    let n = p.as_os_str().len();
    if n > MAX_SOCKET_PATH {
        Err(format!(
            "a unix socket path is at most {MAX_SOCKET_PATH} bytes and this one is {n}: choose a shorter one"
        ))
    } else {
        Ok(())
    }
}

/// A path a unix socket can be made at.
fn socket_path(v: &Value) -> Result<PathBuf, String> {
    let p = path(v)?;
    fits_a_socket(&p)?;
    Ok(p)
}

fn socket_addr(v: &Value) -> Result<SocketAddr, String> {
    parsed("an address like \"127.0.0.1:2525\"", |s| {
        s.parse::<SocketAddr>()
            .map_err(|_| {
                format!("expected an address like \"127.0.0.1:2525\" or \"[::1]:2525\", got {s:?}")
            })
            .and_then(|a| not_port_zero(a, "25"))
    })(v)
}

/// A listener's address on port 0 would get a port the system picks,
/// which no client (and no log line) would know (walkAW F11).
fn not_port_zero(a: SocketAddr, example: &str) -> Result<SocketAddr, String> {
    if a.port() == 0 {
        return Err(format!(
            "port 0 would take a port the system picks, which no client knows: give one, e.g. \"{}:{example}\"",
            match a.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            }
        ));
    }
    Ok(a)
}

fn net(v: &Value) -> Result<IpNet, String> {
    parsed("a network like \"10.0.0.0/8\"", |s| {
        parse_net(s)
            .map_err(|_| format!("expected a network like \"10.0.0.0/8\" or an address, got {s:?}"))
    })(v)
}

/// A domain name, with an example that fits the key: a DNSBL zone's error
/// should not suggest a host name, nor a host name's a DNSBL zone.
fn domain_like(example: &'static str) -> impl Fn(&Value) -> Result<String, String> {
    move |v| match v.as_str() {
        Some(s) if is_domain(s) => Ok(s.to_string()),
        Some(s) => Err(format!("expected a domain like {example:?}, got {s:?}")),
        None => Err(format!(
            "expected a domain like {example:?}, got {}",
            show(v)
        )),
    }
}

fn domain_pattern(v: &Value) -> Result<DomainPattern, String> {
    parsed(
        "a domain like \"example.com\" or \"*.example.com\"",
        DomainPattern::parse,
    )(v)
}

fn status(v: &Value) -> Result<Status, String> {
    parsed("a status like \"av/infected\"", Status::parse)(v)
}

/// One mailbox, as RCPT TO and `--to` take it ([`crate::text::check_mailbox`]):
/// these addresses receive notices and DSNs, so one the next hop would
/// refuse (`a@b@c`, `a@b.`) is refused here, at its line. An
/// internationalised domain is taken as its A-label, as `--to` takes it
/// (walkAD: `sec@bücher.example` was refused as non-ASCII).
fn address(v: &Value) -> Result<String, String> {
    parsed("an address like \"postmaster@example.com\"", |s| {
        let a_label = crate::text::a_label_mailbox(s);
        crate::text::check_mailbox(&a_label)
            .map(|()| a_label.clone())
            .map_err(|e| {
                format!("expected an address like \"postmaster@example.com\", got {s:?}: {e}")
            })
    })(v)
}

/// One of `allowed`.
fn one_of(allowed: &'static [&'static str]) -> impl Fn(&Value) -> Result<String, String> {
    move |v| {
        let expected = || format!("expected one of {}", quoted(allowed));
        match v.as_str() {
            Some(s) if allowed.contains(&s) => Ok(s.to_string()),
            Some(s) => Err(format!("{}, got {s:?}", expected())),
            None => Err(format!("{}, got {}", expected(), show(v))),
        }
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An address glob (`[spam] traps`).
fn address_pattern(v: &Value) -> Result<Pattern, String> {
    parsed("an address glob like \"trap@example.com\"", |s| {
        let trimmed = s.trim();
        if trimmed.is_empty() || trimmed.contains(char::is_whitespace) || !trimmed.contains('@') {
            Err(format!(
                "expected an address glob like \"trap@example.com\", got {s:?}"
            ))
        } else if let Some(problem) = never_matches(s, trimmed) {
            Err(problem)
        } else {
            Pattern::address(trimmed)
        }
    })(v)
}

/// A route's `match`: a glob matched against the whole recipient address.
/// One that can match no recipient (`""`, `"example.com"`,
/// `"@example.com"`) was accepted, and the mail it was written for went by
/// MX instead, silently (walkAW F22). A glob without `@` whose `*` or `?`
/// can stand for it (`"*.example"`) matches and is kept.
fn route_pattern(v: &Value) -> Result<Pattern, String> {
    parsed("a recipient glob like \"*@example.com\"", |s| {
        let glob = s.trim();
        if glob.is_empty() || glob.contains(char::is_whitespace) {
            return Err(format!(
                "expected a recipient glob like \"*@example.com\" (\"*\" for every recipient), got {s:?}"
            ));
        }
        // What a mail client writes around an address ("<a@b>", "mailto:",
        // a list's comma) is no part of an envelope address, nor is a
        // second @ (walkBC F3).
        if glob.contains(['<', '>', ',', ';', '"'])
            || glob.matches('@').count() > 1
            || glob.to_ascii_lowercase().starts_with("mailto:")
        {
            return Err(format!(
                "expected a recipient glob like \"*@example.com\" or \"user@example.com\", one bare address form, got {s:?}: it matches no recipient"
            ));
        }
        if !glob.contains(['@', '*', '?']) {
            let domain = glob.strip_prefix("*.").unwrap_or(glob);
            let meant = if domain.contains('.') && is_domain(domain) {
                format!("\"*@{glob}\" for the recipients of a domain")
            } else {
                format!("\"{glob}@*\" or \"*@example.com\"")
            };
            return Err(format!(
                "expected a recipient glob like {meant}, got {s:?}: a route's match is compared with the whole address, so without \"@\" it matches no recipient and their mail goes by MX"
            ));
        }
        if let Some(problem) = never_matches(s, glob).filter(|_| glob.contains('@')) {
            return Err(problem);
        }
        // Without "*" a glob matches addresses of its own length alone, and
        // the shortest address ("a@b") has three characters: "?" and "??"
        // match nothing (walkBD F9).
        if !glob.contains('*') && glob.chars().count() < 3 {
            return Err(format!(
                "expected a recipient glob like \"*@example.com\" (\"*\" for every recipient), got {s:?}: without \"*\" it matches only addresses of {} character(s), and the shortest address has three",
                glob.chars().count()
            ));
        }
        Pattern::address(glob)
    })(v)
}

/// An entry of `group.*.senders` / `recipients` and of `[spam] whitelist` /
/// `blacklist`: `"ip NET"` or an address glob, compiled.
fn group_member(v: &Value) -> Result<GroupEntry, String> {
    parsed(
        "an address glob like \"*@example.com\" or \"ip 10.0.0.0/8\"",
        |s| {
            let trimmed = s.trim();
            if let Some(rest) = trimmed.strip_prefix("ip ") {
                parse_net(rest.trim()).map(GroupEntry::Net).map_err(|_| {
                    format!("expected \"ip\" and a network like \"ip 10.0.0.0/8\", got {s:?}")
                })
            } else if trimmed.is_empty() || trimmed.contains(char::is_whitespace) {
                Err(format!(
                    "expected an address glob like \"*@example.com\" or \"ip 10.0.0.0/8\", got {s:?}"
                ))
            } else if let Some(problem) = never_matches(s, trimmed) {
                Err(problem)
            } else {
                Pattern::address(trimmed).map(GroupEntry::Address)
            }
        },
    )(v)
}

/// Why an address glob can never match a sender or recipient, with the form
/// that was most likely meant; `None` when it can match. A glob is matched
/// against the whole address, so a bare IP, network or domain
/// (`"127.0.0.1"`, `"partner.example"`) or a local part left empty
/// (`"@partner.example"`) would be accepted and silently do nothing: a
/// whitelist that whitelists no one. A glob of `*` alone matches everyone
/// and is kept.
fn never_matches(s: &str, glob: &str) -> Option<String> {
    if let Some(domain) = glob.strip_prefix('@').filter(|d| !d.is_empty()) {
        return Some(format!(
            "expected an address glob like \"*@{domain}\" (a local part is needed: \"*\" for \
             any), got {s:?}"
        ));
    }
    if let Some(local) = glob.strip_suffix('@') {
        // "*@", "user@": no address has an empty domain (walkI 18).
        let local = if local.is_empty() { "*" } else { local };
        return Some(format!(
            "expected an address glob like \"{local}@example.com\" or \"{local}@*\" (a domain is \
             needed: \"*\" for any), got {s:?}"
        ));
    }
    if glob.contains('@') || glob.chars().all(|c| c == '*') {
        return None;
    }
    if let Ok(net) = parse_net(glob) {
        let what = if net.prefix_len() == net.max_prefix_len() {
            "a client address"
        } else {
            "a client network"
        };
        return Some(format!(
            "expected \"ip {glob}\" for {what}, or an address glob like \"*@example.com\", \
             got {s:?}"
        ));
    }
    // A single word ("nobody") is more likely a local part than a domain.
    let domain = glob.strip_prefix("*.").unwrap_or(glob);
    if domain.contains('.') && is_domain(domain) {
        return Some(format!(
            "expected an address glob like \"*@{glob}\" for the addresses of a domain, or \
             \"ip NET\" for a client network, got {s:?}"
        ));
    }
    Some(format!(
        "expected an address glob like \"*@example.com\" or \"ip 10.0.0.0/8\", got {s:?} \
         (without \"@\" it matches no address)"
    ))
}

// ---------------------------------------------------------------------------
// Policy keys: one converter per type, so the same macro reads `[policy]` and
// every `[group.NAME]`.

/// How a policy key's value is read.
trait Convert: Sized {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, value: Option<&Value>) -> Option<Self>;
}

impl Convert for bool {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, value: Option<&Value>) -> Option<Self> {
        ctx.one(path, value, boolean)
    }
}

impl Convert for u32 {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, value: Option<&Value>) -> Option<Self> {
        ctx.one(path, value, uint32)
    }
}

impl Convert for String {
    /// Only `admin_address` is a plain string among the policy keys.
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, value: Option<&Value>) -> Option<Self> {
        ctx.one(path, value, address)
    }
}

impl Convert for TemplatesDir {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, value: Option<&Value>) -> Option<Self> {
        ctx.one(path, value, |v| text(v).map(TemplatesDir::new))
    }
}

impl Convert for ByteSize {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, value: Option<&Value>) -> Option<Self> {
        ctx.one(path, value, size)
    }
}

impl Convert for SpamLevel {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, value: Option<&Value>) -> Option<Self> {
        ctx.one(
            path,
            value,
            parsed(
                "one of \"minimum\", \"standard\", \"high\", \"maximum\"",
                SpamLevel::parse,
            ),
        )
    }
}

impl Convert for Action {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, value: Option<&Value>) -> Option<Self> {
        ctx.one(
            path,
            value,
            parsed(
                "one of \"pass\", \"remove\", \"placeholder\"",
                Action::parse,
            ),
        )
    }
}

impl Convert for Vec<Status> {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, value: Option<&Value>) -> Option<Self> {
        ctx.list(path, value, status)
    }
}

/// Reads a `file:PATH` list of globs.
fn glob_file(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the list {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

impl Convert for Vec<Pattern> {
    /// The name and MIME globs (`include_by_name`, ...): any non-empty
    /// string, compiled once here.
    /// `"file:PATH"` stands for the globs in that file, one per line (`#`
    /// starts a comment); a relative PATH is relative to the config file.
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, value: Option<&Value>) -> Option<Self> {
        let base = std::path::Path::new(ctx.origin)
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        ctx.list(path, value, |v| match text(v)? {
            s if s.is_empty() => Err("expected a glob like \"*.exe\", got \"\"".to_string()),
            s => match s.strip_prefix("file:") {
                Some(file) => glob_file(&base.join(file)),
                None => Ok(vec![s]),
            },
        })
        .map(|lists| {
            lists
                .into_iter()
                .flatten()
                .map(|g| Pattern::new(&g))
                .collect()
        })
    }
}

impl Convert for BTreeMap<String, String> {
    /// `subject_prefix`: status to prefix. The problem of a key that is no
    /// status is worded for a key (the value is not what is wrong), with
    /// the closest status when it looks like a typo.
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, value: Option<&Value>) -> Option<Self> {
        ctx.map(path, value, |k, v| {
            if Status::parse(k).is_err() {
                let hint = super::closest(k, STATUSES)
                    .map(|s| format!(" (did you mean {s:?}?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "{k:?} is not a status: each key is a status, like \"as/spam\" = \"[SPAM]\"{hint}; statuses: {}",
                    STATUSES.join(", ")
                ));
            }
            text(v)
        })
    }
}

/// A [`Group`] holding the policy keys present in `$raw` (`None` for the
/// others) and the given senders and recipients.
macro_rules! read_policy_keys {
    ($ctx:ident, $path:ident, $raw:ident, $senders:expr, $recipients:expr;
     $($field:ident: $ty:ty),* $(,)?) => {
        Group {
            senders: $senders,
            recipients: $recipients,
            $( $field: <$ty as Convert>::read($ctx, &$path.key(stringify!($field)), $raw.$field.as_ref()), )*
        }
    };
}

// ---------------------------------------------------------------------------
// Sections.

/// Reads `$raw.$field` at `$path.$field` with `$convert`.
macro_rules! get {
    ($ctx:ident, $path:ident, $raw:ident . $field:ident, $convert:expr) => {
        $ctx.one(
            &$path.key(stringify!($field)),
            $raw.$field.as_ref(),
            $convert,
        )
    };
}

/// Reads the list `$raw.$field` element by element with `$convert`.
macro_rules! get_list {
    ($ctx:ident, $path:ident, $raw:ident . $field:ident, $convert:expr) => {
        $ctx.list(
            &$path.key(stringify!($field)),
            $raw.$field.as_ref(),
            $convert,
        )
    };
}

/// A user or group name as `useradd` accepts it (existence is checked by
/// `mailward run` on the machine that runs it; `check-config` warns).
fn account(v: &Value) -> Result<String, String> {
    let name = text(v)?;
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'));
    if ok {
        Ok(name)
    } else {
        Err(format!(
            "expected a user or group name like \"mailward\", got {}",
            show(v)
        ))
    }
}

fn server(ctx: &mut Ctx<'_>, raw: &RawServer) -> Server {
    let p = KeyPath::root("server");
    let data_dir =
        get!(ctx, p, raw.data_dir, path).unwrap_or_else(|| PathBuf::from(super::DEFAULT_DATA_DIR));
    let hostname: String = get!(ctx, p, raw.hostname, domain_like("mx.example.org"))
        .unwrap_or_else(|| "gw.example.com".into());
    Server {
        authserv_id: get!(ctx, p, raw.authserv_id, domain_like("mail.example.org"))
            .unwrap_or_else(|| hostname.clone()),
        hostname,
        postmaster: get!(ctx, p, raw.postmaster, address)
            .unwrap_or_else(|| "postmaster@example.com".into()),
        admin_socket: match get!(ctx, p, raw.admin_socket, socket_path) {
            Some(s) => s,
            None => {
                let s = data_dir.join("admin.sock");
                if let Err(why) = fits_a_socket(&s) {
                    ctx.report(
                        &p.key("data_dir"),
                        format!(
                            "the admin socket under it, {}, is too long: {why}, or set server.admin_socket",
                            s.display()
                        ),
                    );
                }
                s
            }
        },
        data_dir,
        user: get!(ctx, p, raw.user, account),
        group: get!(ctx, p, raw.group, account),
    }
}

/// Whether `[milter] listen` is set: a gateway that only serves milter
/// may have no SMTP listener.
fn milter_only(raw: &RawMilter) -> bool {
    raw.listen
        .as_ref()
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

fn network(ctx: &mut Ctx<'_>, raw: &RawNetwork, milter_only: bool) -> Network {
    let p = KeyPath::root("network");
    let listen_on = get_list!(ctx, p, raw.listen_on, socket_addr)
        .unwrap_or_else(|| vec![SocketAddr::from(([127, 0, 0, 1], 2525))]);
    if listen_on.is_empty()
        && !milter_only
        && raw
            .listen_on
            .as_ref()
            .is_some_and(|v| v.as_array().is_some_and(Vec::is_empty))
    {
        ctx.report(
            &p.key("listen_on"),
            "must not be empty (unless [milter] listen is set: a milter-only gateway)",
        );
    }
    Network {
        listen_on,
        protected_domains: get_list!(ctx, p, raw.protected_domains, domain_pattern).unwrap_or_else(
            || {
                ["example.com", "*.example.com"]
                    .iter()
                    .filter_map(|d| DomainPattern::parse(d).ok())
                    .collect()
            },
        ),
        relay_networks: relay_networks(ctx, &p, raw),
        xforward_hosts: xforward_hosts(ctx, &p, raw),
        after_queue: get!(ctx, p, raw.after_queue, boolean).unwrap_or(false),
        tls_certificate: get!(ctx, p, raw.tls_certificate, path),
        tls_key: get!(ctx, p, raw.tls_key, path),
    }
}

/// `network.relay_networks`: clients that may relay to any domain. A
/// network that holds every address makes an open relay, and one wider
/// than any site's (IPv4 /7 or wider, IPv6 /31 or wider) is almost always a slip,
/// so both are warnings (walkAW F4); so is a network written with host
/// bits ("10.0.0.5/8" is all of 10.0.0.0/8, where one host was likely
/// meant), which Postfix warns of too.
fn relay_networks(ctx: &mut Ctx<'_>, p: &KeyPath, raw: &RawNetwork) -> Vec<IpNet> {
    let Some(nets) = get_list!(ctx, p, raw.relay_networks, net) else {
        return "127.0.0.0/8".parse().ok().into_iter().collect();
    };
    for n in &nets {
        let key = p.key("relay_networks");
        if n.prefix_len() == 0 {
            ctx.warn(
                &key,
                format!(
                    "{n} is every address: any client on the Internet may relay through this gateway to any domain (an open relay); list your own networks"
                ),
            );
        } else if n.prefix_len() < n.max_prefix_len() / 4 {
            ctx.warn(
                &key,
                format!(
                    "{n} is wider than any one site's network: every client in it may relay to any domain; list your own networks"
                ),
            );
        }
        if n.addr() != n.network() {
            ctx.warn(
                &key,
                format!(
                    "{n} has host bits set, so it is all of {}/{}; write {}/{} for that one host",
                    n.network(),
                    n.prefix_len(),
                    n.addr(),
                    n.max_prefix_len()
                ),
            );
        }
    }
    nets
}

/// `network.xforward_hosts`: by default this host only (loopback), where
/// the documented Postfix setups run the MTA beside Mailward; XFORWARD
/// sets the client SPF, Authentication-Results and the Received line are
/// computed from, so a network wider than one host (other than loopback)
/// is a warning: any machine in it could make its mail look as if it came
/// from elsewhere (walkAU F7; Postfix's smtpd_authorized_xforward_hosts
/// is empty by default).
fn xforward_hosts(ctx: &mut Ctx<'_>, p: &KeyPath, raw: &RawNetwork) -> Vec<IpNet> {
    let Some(hosts) = get_list!(ctx, p, raw.xforward_hosts, net) else {
        return ["127.0.0.0/8", "::1/128"]
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
    };
    for n in &hosts {
        let loopback = match n {
            IpNet::V4(v4) => v4.network().is_loopback(),
            IpNet::V6(v6) => v6.prefix_len() == 128 && v6.network().is_loopback(),
        };
        if n.prefix_len() < n.max_prefix_len() && !loopback {
            ctx.warn(
                &p.key("xforward_hosts"),
                format!(
                    "{n} is wider than one host: every machine in it may use XFORWARD and so set the client that SPF, Authentication-Results and the Received line are computed from; list the MTAs in front of or behind Mailward one by one"
                ),
            );
        }
    }
    hosts
}

fn access(ctx: &mut Ctx<'_>, raw: &RawAccess) -> Access {
    let p = KeyPath::root("access");
    // An address glob's domain as A-labels, as envelope addresses have it.
    let rule = |v: &Value| {
        parsed("a rule like \"deny ip 10.0.0.0/8\"", |s| {
            let rule = Rule::parse(s)?;
            match &rule.matcher {
                Matcher::Address(glob) => Ok(Rule {
                    matcher: Matcher::Address(Pattern::address(glob.as_str())?),
                    ..rule
                }),
                _ => Ok(rule),
            }
        })(v)
    };
    let resolver = parsed("an address like \"127.0.0.1:5353\"", |s| {
        if s.is_empty() {
            return Ok(None);
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Some(addr));
        }
        s.parse::<IpAddr>()
            .map(|ip| Some(SocketAddr::new(ip, 53)))
            .map_err(|_| {
                format!(
                    "expected an address like \"127.0.0.1:5353\" or \"127.0.0.1\" (port 53), \
                     or \"\" for the system's resolvers, got {s:?}"
                )
            })
    });
    let access = Access {
        connect_rules: get_list!(ctx, p, raw.connect_rules, rule).unwrap_or_default(),
        helo_rules: get_list!(ctx, p, raw.helo_rules, rule).unwrap_or_default(),
        mail_from_rules: get_list!(ctx, p, raw.mail_from_rules, rule).unwrap_or_default(),
        rcpt_rules: get_list!(ctx, p, raw.rcpt_rules, rule).unwrap_or_default(),
        dnsbl: get_list!(ctx, p, raw.dnsbl, domain_like("zen.example.org")).unwrap_or_default(),
        dns_resolver: get!(ctx, p, raw.dns_resolver, resolver).flatten(),
    };
    use crate::config::rules::AddressOf;
    for (key, rules, address) in [
        ("connect_rules", &access.connect_rules, None),
        ("helo_rules", &access.helo_rules, None),
        (
            "mail_from_rules",
            &access.mail_from_rules,
            Some(AddressOf::Sender),
        ),
        ("rcpt_rules", &access.rcpt_rules, Some(AddressOf::Recipient)),
    ] {
        for why in rules.iter().filter_map(|r| r.never_matches(address)) {
            ctx.warn(&p.key(key), why);
        }
    }
    access
}

/// The most scan threads `limits.antiviral_sessions` may start. Scanning is
/// CPU work, so more threads than cores only queue in the kernel; a bound
/// keeps a typo (100000) from exhausting the host's threads at start
/// (walkAW F10).
const MAX_SCAN_WORKERS: u32 = 256;

fn limits(ctx: &mut Ctx<'_>, raw: &RawLimits) -> Limits {
    let p = KeyPath::root("limits");
    let count = |v: &Value| match uint32(v)? {
        0 => Err("must be at least 1".to_string()),
        n => Ok(n),
    };
    let bytes = |v: &Value| match size(v)? {
        ByteSize(0) => Err("must be more than 0".to_string()),
        n => Ok(n),
    };
    Limits {
        incoming_sessions: get!(ctx, p, raw.incoming_sessions, count).unwrap_or(200),
        incoming_sessions_per_ip: get!(ctx, p, raw.incoming_sessions_per_ip, count).unwrap_or(20),
        incoming_sessions_per_ipv6_prefix: get!(
            ctx,
            p,
            raw.incoming_sessions_per_ipv6_prefix,
            |v: &Value| match uint32(v)? {
                n @ 32..=128 => Ok(n as u8),
                n => Err(format!(
                    "must be a prefix length from 32 to 128, got {n} (shorter would count a whole provider as one client)"
                )),
            }
        )
        .unwrap_or(64),
        outgoing_sessions: get!(ctx, p, raw.outgoing_sessions, count).unwrap_or(100),
        outgoing_sessions_per_host: get!(ctx, p, raw.outgoing_sessions_per_host, count)
            .unwrap_or(10),
        antiviral_sessions: get!(ctx, p, raw.antiviral_sessions, |v: &Value| match uint32(v)? {
            n @ 1..=MAX_SCAN_WORKERS => Ok(n),
            n => Err(format!(
                "must be from 1 to {MAX_SCAN_WORKERS}, got {n} (one scan thread each; about one per CPU core is right)"
            )),
        })
        .unwrap_or(4),
        max_message_size: get!(ctx, p, raw.max_message_size, bytes).unwrap_or(ByteSize::mib(20)),
        max_messages_per_session: get!(ctx, p, raw.max_messages_per_session, count).unwrap_or(100),
        max_rcpts_per_message: get!(ctx, p, raw.max_rcpts_per_message, count).unwrap_or(100),
        max_session_size: get!(ctx, p, raw.max_session_size, bytes).unwrap_or(ByteSize::mib(200)),
        max_hops: get!(ctx, p, raw.max_hops, count).unwrap_or(50),
        min_queue_free_space: get!(ctx, p, raw.min_queue_free_space, size)
            .unwrap_or(ByteSize::mib(100)),
        min_data_rate: get!(ctx, p, raw.min_data_rate, uint32).unwrap_or(500),
        stress_percent: get!(ctx, p, raw.stress_percent, |v: &Value| match uint32(v)? {
            n if n > 100 => Err(format!("must be a percentage from 0 to 100, got {n}")),
            n => Ok(n),
        })
        .unwrap_or(80),
        scan_memory: get!(ctx, p, raw.scan_memory, bytes).unwrap_or(ByteSize::mib(256)),
        long_lines: get!(
            ctx,
            p,
            raw.long_lines,
            parsed("\"refuse\" or \"split\"", LongLines::parse)
        )
        .unwrap_or(LongLines::Refuse),
    }
}

/// A duration that must not be zero.
fn positive_dur(v: &Value) -> Result<Dur, String> {
    match dur(v)? {
        Dur(d) if d.is_zero() => Err("must be longer than 0s".to_string()),
        d => Ok(d),
    }
}

fn timeouts(ctx: &mut Ctx<'_>, raw: &RawTimeouts) -> Timeouts {
    let p = KeyPath::root("timeouts");
    let d = positive_dur;
    let t = Timeouts {
        min_backoff: get!(ctx, p, raw.min_backoff, d).unwrap_or(Dur::secs(5 * 60)),
        max_backoff: get!(ctx, p, raw.max_backoff, d).unwrap_or(Dur::secs(3600)),
        max_queue_lifetime: get!(ctx, p, raw.max_queue_lifetime, d)
            .unwrap_or(Dur::secs(5 * 86_400)),
        delay_notice: get!(ctx, p, raw.delay_notice, d).unwrap_or(Dur::secs(4 * 3600)),
        command: get!(ctx, p, raw.command, d).unwrap_or(Dur::secs(5 * 60)),
        data: get!(ctx, p, raw.data, d).unwrap_or(Dur::secs(10 * 60)),
        scan: get!(ctx, p, raw.scan, d).unwrap_or(Dur::secs(60)),
        scan_in_session: get!(ctx, p, raw.scan_in_session, d).unwrap_or(Dur::secs(20)),
        connect: get!(ctx, p, raw.connect, d).unwrap_or(Dur::secs(30)),
        dns: get!(ctx, p, raw.dns, d).unwrap_or(Dur::secs(10)),
        stress_command: get!(ctx, p, raw.stress_command, d).unwrap_or(Dur::secs(10)),
        stress_data: get!(ctx, p, raw.stress_data, d).unwrap_or(Dur::secs(60)),
    };
    // Stress mode only shortens a deadline: a stress timeout not shorter
    // than its normal one is never used, which is not what its setter
    // meant (walkY 7). Said when either key is written.
    let pairs = [
        (
            "command",
            t.command,
            &raw.command,
            "stress_command",
            t.stress_command,
            &raw.stress_command,
        ),
        (
            "data",
            t.data,
            &raw.data,
            "stress_data",
            t.stress_data,
            &raw.stress_data,
        ),
    ];
    for (name, normal, written, stress_name, stress, stress_written) in pairs {
        if stress.get() >= normal.get() && (written.is_some() || stress_written.is_some()) {
            let key = if stress_written.is_some() {
                stress_name
            } else {
                name
            };
            ctx.warn(
                &p.key(key),
                format!(
                    "timeouts.{stress_name} ({stress}) is not shorter than timeouts.{name} ({normal}): stress mode only shortens deadlines, so {name} applies under stress too"
                ),
            );
        }
    }
    // The queue's timings against each other (walkAW F5): each is valid on
    // its own, but these pairs leave a promise unkept. Warnings, not
    // errors: a test bed may want mail bounced at once.
    if t.max_queue_lifetime.get() < t.min_backoff.get()
        && (raw.max_queue_lifetime.is_some() || raw.min_backoff.is_some())
    {
        // At the key the file sets (one of the two is set).
        let key = if raw.max_queue_lifetime.is_some() {
            "max_queue_lifetime"
        } else {
            "min_backoff"
        };
        ctx.warn(
            &p.key(key),
            format!(
                "timeouts.max_queue_lifetime ({}) is shorter than timeouts.min_backoff ({}): a deferred message is tried once more, when its lifetime ends, and then returned to its sender",
                t.max_queue_lifetime, t.min_backoff
            ),
        );
    }
    if t.delay_notice.get() >= t.max_queue_lifetime.get()
        && (raw.delay_notice.is_some() || raw.max_queue_lifetime.is_some())
    {
        let key = if raw.delay_notice.is_some() {
            "delay_notice"
        } else {
            "max_queue_lifetime"
        };
        ctx.warn(
            &p.key(key),
            format!(
                "timeouts.delay_notice ({}) is not shorter than timeouts.max_queue_lifetime ({}): no sender is told of a delay, since the message is bounced first",
                t.delay_notice, t.max_queue_lifetime
            ),
        );
    }
    t
}

fn routes(ctx: &mut Ctx<'_>, raw: &[RawRoute]) -> Vec<Route> {
    let mut out = Vec::with_capacity(raw.len());
    // The patterns seen so far (lower-cased), with their index: a route
    // that an earlier one already covers is never used (the first match
    // wins). The common case is a `match = "*"` appended after the
    // default configuration's own catch-all (walkAO 2).
    let mut earlier: Vec<(usize, String)> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let p = KeyPath::root("route").index(i);
        // Not get!: the field is `match_`, the key `match` (a problem was
        // said at `route[0].match_`, line 1, the key no file has).
        let pattern = ctx.one(&p.key("match"), r.match_.as_ref(), route_pattern);
        if let Some(pat) = &pattern {
            let this = pat.as_str().to_lowercase();
            let covers = |e: &str| e.chars().all(|c| c == '*') || e == "*@*" || e == this;
            if let Some((j, e)) = earlier.iter().find(|(_, e)| covers(e)) {
                ctx.warn(
                    &p.key("match"),
                    format!(
                        "never used: route[{j}] (match = \"{e}\") comes first and already matches every recipient this one does; routes are tried in order and the first match wins: remove one, or move this one up"
                    ),
                );
            }
            earlier.push((i, this));
        }
        let to = get!(
            ctx,
            p,
            r.to,
            parsed("a next hop like \"[127.0.0.1:2526]\"", NextHop::parse)
        );
        if r.match_.is_none() {
            ctx.report(
                &p.key("match"),
                "missing: a route needs `match` (a recipient glob) and `to`",
            );
        }
        if r.to.is_none() {
            ctx.report(
                &p.key("to"),
                "missing: a route needs `match` and `to` (the next hop)",
            );
        }
        let mode = get!(
            ctx,
            p,
            r.tls,
            parsed(
                "\"none\", \"may\", \"encrypt\" or \"verify\"",
                TlsMode::parse
            )
        )
        .unwrap_or(TlsMode::May);
        let ca = get!(ctx, p, r.tls_ca, path).unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
        let name = get!(ctx, p, r.tls_name, domain_like("mx.example.org"));
        if mode == TlsMode::Verify && !ca.is_file() {
            ctx.report(
                &p.key("tls_ca"),
                format!(
                    "{} is not a file: tls = \"verify\" needs the CA certificates (PEM) the next hop's certificate chains to",
                    ca.display()
                ),
            );
        }
        if mode != TlsMode::Verify && (r.tls_ca.is_some() || r.tls_name.is_some()) {
            ctx.report(
                &p.key(if r.tls_ca.is_some() {
                    "tls_ca"
                } else {
                    "tls_name"
                }),
                "only used with tls = \"verify\"",
            );
        }
        if let (Some(pattern), Some(to)) = (pattern, to) {
            out.push(Route {
                pattern,
                to,
                tls: OutboundTls { mode, ca, name },
            });
        }
    }
    out
}

/// `[policy]` as DESIGN section 4 gives it.
pub fn default_policy() -> Policy {
    Policy {
        check_av: true,
        check_spam: true,
        spam_level: SpamLevel::Standard,
        mark_subject: vec![
            Status("as/spam".into()),
            Status("as/probable".into()),
            Status("as/blacklisted".into()),
        ],
        subject_prefix: BTreeMap::from([
            ("as/spam".to_string(), "[!!SPAM]".to_string()),
            ("as/probable".to_string(), "[?PROBABLE SPAM]".to_string()),
            ("as/blacklisted".to_string(), "[!!BLACKLISTED]".to_string()),
        ]),
        add_headers: true,
        action_infected: Action::Remove,
        action_suspicious: Action::Remove,
        action_protected: Action::Pass,
        action_error: Action::Pass,
        action_filtered: Action::Remove,
        reject: Vec::new(),
        block: Vec::new(),
        quarantine: Vec::new(),
        notify_sender: Vec::new(),
        notify_recipients: Vec::new(),
        notify_admin: Vec::new(),
        admin_address: "postmaster@example.com".into(),
        notify_templates: TemplatesDir::default(),
        include_by_name: Vec::new(),
        exclude_by_name: Vec::new(),
        include_by_mime: Vec::new(),
        exclude_by_mime: Vec::new(),
        max_scan_depth: 8,
        max_unpacked_size: ByteSize::mib(100),
    }
}

fn policy(ctx: &mut Ctx<'_>, raw: &RawPolicy) -> Policy {
    let p = KeyPath::root("policy");
    let overrides = for_policy_keys!(read_policy_keys!(ctx, p, raw, Vec::new(), Vec::new();));
    let policy = overrides.effective(&default_policy());
    sender_notices(ctx, &p, &policy.notify_sender);
    for (key, list) in [
        ("reject", &policy.reject),
        ("block", &policy.block),
        ("quarantine", &policy.quarantine),
    ] {
        clean_in_actions(ctx, &p, key, list);
    }
    policy
}

/// `av/clean` or `as/clean` in `reject`, `block` or `quarantine`: nearly
/// every message has one of them, so the list stops (or keeps) nearly all
/// mail; taken, since a test gateway may mean it, but a warning (walkAW
/// F26: `reject = ["av/clean", "as/clean"]` refused every message without
/// a word).
fn clean_in_actions(ctx: &mut Ctx<'_>, p: &KeyPath, key: &str, list: &[Status]) {
    for s in list {
        if matches!(s.as_str(), "av/clean" | "as/clean") {
            ctx.warn(
                &p.key(key),
                format!(
                    "{s} is the status of nearly every message: this {key}s nearly all mail; \
                     name the findings (e.g. av/infected, as/spam)"
                ),
            );
        }
    }
}

/// `notify_sender` may name only `av/` statuses: the sender of spam or of
/// filtered mail is almost always forged, so a notice would go to an
/// innocent third party (backscatter) and the policy never sends one. A
/// list that asks for it anyway is refused rather than quietly ignored.
/// `av/clean` is refused too: it is no finding, and nearly every spam is
/// av/clean, so it would send a notice about every message (walkI 1).
fn sender_notices(ctx: &mut Ctx<'_>, p: &KeyPath, list: &[Status]) {
    let path = p.key("notify_sender");
    for (i, s) in list.iter().enumerate() {
        if NOT_IN_ALL.contains(&s.as_str()) && s.as_str().starts_with("av/") {
            ctx.report_elem(
                &path,
                i,
                format!(
                    "{s} is never notified to the sender: it is no finding (nearly every \
                     spam is {s}, so the sender of every message would get a notice); name \
                     the findings, e.g. av/infected or av/all"
                ),
            );
        } else if !s.as_str().starts_with("av/") {
            ctx.report_elem(
                &path,
                i,
                format!(
                    "{s} is never notified to the sender, only av/ statuses are (its sender is \
                     most likely forged: a notice would be backscatter); use reject, \
                     notify_recipients or notify_admin"
                ),
            );
        }
    }
}

fn groups(ctx: &mut Ctx<'_>, raw: &BTreeMap<String, RawGroup>) -> BTreeMap<String, Group> {
    let mut out = BTreeMap::new();
    for (name, g) in raw {
        let p = KeyPath::root("group").key(name);
        if RawGroup::FIELDS.contains(&name.as_str()) {
            ctx.report(
                &p,
                format!("`{name}` is not a group: a group's keys go in a [group.NAME] table"),
            );
            continue;
        }
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            ctx.report(
                &p,
                "a group name is made of letters, digits, '_', '-' and '.'",
            );
        } else if name.eq_ignore_ascii_case("default") {
            // Logs, statistics, notices and the stores call `[policy]`
            // `default`: a group of that name could not be told from it,
            // and /metrics would show two series of one name (walkO 3).
            ctx.report(
                &p,
                format!(
                    "`{name}` is the name logs and statistics give [policy] (the default \
                     group); choose another name"
                ),
            );
        }
        let senders = get_list!(ctx, p, g.senders, group_member).unwrap_or_default();
        let recipients = get_list!(ctx, p, g.recipients, group_member).unwrap_or_default();
        // An empty list is no member either (walkV 4: `senders = []` and
        // `recipients = []` passed, and the group never applied).
        let no_member = |v: &Option<Value>| {
            v.as_ref()
                .is_none_or(|v| v.as_array().is_some_and(Vec::is_empty))
        };
        if g.senders.is_none() && g.recipients.is_none() {
            ctx.report(
                &p,
                "a group needs `senders` or `recipients`, or it never applies",
            );
        } else if no_member(&g.senders) && no_member(&g.recipients) {
            let key = if g.recipients.is_some() {
                "recipients"
            } else {
                "senders"
            };
            ctx.report(
                &p.key(key),
                "the group's `senders` and `recipients` are both empty, so it never applies: \
                 give it a sender or a recipient, or remove the group",
            );
        }
        let group = for_policy_keys!(read_policy_keys!(ctx, p, g, senders, recipients;));
        sender_notices(ctx, &p, group.notify_sender.as_deref().unwrap_or_default());
        for (key, list) in [
            ("reject", &group.reject),
            ("block", &group.block),
            ("quarantine", &group.quarantine),
        ] {
            clean_in_actions(ctx, &p, key, list.as_deref().unwrap_or_default());
        }
        out.insert(name.clone(), group);
    }
    out
}

fn archive(ctx: &mut Ctx<'_>, raw: &RawArchive) -> Archive {
    let p = KeyPath::root("archive");
    Archive {
        incoming: get!(ctx, p, raw.incoming, boolean).unwrap_or(false),
        outgoing: get!(ctx, p, raw.outgoing, boolean).unwrap_or(false),
        max_age: get!(ctx, p, raw.max_age, positive_dur).unwrap_or(Dur::secs(90 * 86_400)),
        max_size: get!(ctx, p, raw.max_size, store_size).unwrap_or(ByteSize::gib(10)),
    }
}

/// A zone written twice in one list (`["z.test:3.5", "z.test:final"]`):
/// which entry counts would be a guess, so the later one is refused at its
/// line (walkI 17).
fn duplicate_zones(ctx: &mut Ctx<'_>, path: &KeyPath, value: Option<&Value>) {
    let Some(Value::Array(items)) = value else {
        return;
    };
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let zone = match item {
            Value::String(s) => s.rsplit_once(':').map(|(z, _)| z),
            Value::Table(t) => t.get("zone").and_then(Value::as_str),
            _ => None,
        };
        let Some(zone) = zone.map(|z| z.trim_end_matches('.').to_ascii_lowercase()) else {
            continue;
        };
        match seen.iter().find(|(z, _)| *z == zone) {
            Some((_, first)) => ctx.report_elem(
                path,
                i,
                format!(
                    "zone {zone} is listed twice (entry {} and entry {}): keep one, with the weight you mean",
                    first + 1,
                    i + 1
                ),
            ),
            None => seen.push((zone, i)),
        }
    }
}

fn spam(ctx: &mut Ctx<'_>, raw: &RawSpam, data_dir: &Path) -> Spam {
    let p = KeyPath::root("spam");
    duplicate_zones(ctx, &p.key("dnsbl"), raw.dnsbl.as_ref());
    duplicate_zones(ctx, &p.key("surbl"), raw.surbl.as_ref());
    let rules = parsed("a path or \"\"", |s| {
        Ok((!s.is_empty()).then(|| PathBuf::from(s)))
    });
    // Below these a site's learning would be trimmed by a few days of mail.
    let at_least = |least: u64| {
        move |v: &Value| match uint64(v)? {
            n if n < least => Err(format!("must be at least {least}, got {n}")),
            n => Ok(n),
        }
    };
    Spam {
        dir: get!(ctx, p, raw.dir, path).unwrap_or_else(|| data_dir.join("spam")),
        // 0 would read as "scores from 0 of each" while the classifier
        // still needs one of each to have probabilities (walkAV F6).
        min_learnt: get!(ctx, p, raw.min_learnt, at_least(1)).unwrap_or(200),
        rules: get!(ctx, p, raw.rules, rules).flatten(),
        dnsbl: get_list!(ctx, p, raw.dnsbl, scored_zone("bl.example.org")).unwrap_or_default(),
        blacklist: get_list!(ctx, p, raw.blacklist, group_member).unwrap_or_default(),
        whitelist: get_list!(ctx, p, raw.whitelist, group_member).unwrap_or_default(),
        spf: get!(ctx, p, raw.spf, one_of(&["off", "score", "reject"]))
            .map(|m| match m.as_str() {
                "off" => SpfMode::Off,
                "reject" => SpfMode::Reject,
                _ => SpfMode::Score,
            })
            .unwrap_or(SpfMode::Score),
        dkim: get!(ctx, p, raw.dkim, boolean).unwrap_or(true),
        surbl: get_list!(ctx, p, raw.surbl, scored_zone("multi.surbl.example")).unwrap_or_default(),
        store: get!(ctx, p, raw.store, redis_url).unwrap_or_default(),
        autolearn: get!(ctx, p, raw.autolearn, boolean).unwrap_or(false),
        traps: get_list!(ctx, p, raw.traps, address_pattern).unwrap_or_default(),
        max_tokens: get!(ctx, p, raw.max_tokens, at_least(100_000)).unwrap_or(2_000_000),
        max_learnt: get!(ctx, p, raw.max_learnt, at_least(10_000)).unwrap_or(2_000_000),
    }
}

/// A `[spam] dnsbl` or `surbl` zone, written `"ZONE:WEIGHT"` /
/// `"ZONE:final"` or as a table `{ zone = "ZONE", weight = 4.0 }` /
/// `{ zone = "ZONE", weight = "final" }` (DESIGN's form).
fn scored_zone(example: &'static str) -> impl Fn(&Value) -> Result<ScoredZone, String> {
    move |v| {
        let expected = || {
            format!(
                "expected a zone and a weight like \"{example}:3.5\", \"{example}:final\" or {{ zone = \"{example}\", weight = 3.5 }}, got {}",
                show(v)
            )
        };
        match v {
            Value::String(s) => ScoredZone::parse(s),
            Value::Table(t) => {
                if let Some(k) = t.keys().find(|k| *k != "zone" && *k != "weight") {
                    return Err(format!(
                        "unknown key {k:?} in a zone (it has zone and weight)"
                    ));
                }
                let zone = t.get("zone").and_then(Value::as_str).ok_or_else(expected)?;
                let weight = match t.get("weight") {
                    Some(Value::Float(w)) => Some(*w),
                    Some(Value::Integer(w)) => Some(*w as f64),
                    Some(Value::String(w)) if w == "final" => None,
                    _ => return Err(expected()),
                };
                if let Some(problem) = weight.and_then(ScoredZone::weight_problem) {
                    return Err(problem);
                }
                ScoredZone::new(zone, weight).ok_or_else(expected)
            }
            _ => Err(expected()),
        }
    }
}

/// `[spam] store`: "" or a `redis://HOST:PORT/DB` URL.
fn redis_url(v: &Value) -> Result<String, String> {
    let s = text(v)?;
    if s.is_empty() {
        return Ok(s);
    }
    // Said without a password it may hold (walkBI F2).
    let shown = crate::check::spam::store::shown(&s);
    if s.starts_with("rediss://") {
        // walkAK 1: refused with the generic sentence, it read as a typo.
        return Err(format!(
            "got {shown:?}: TLS to Redis (rediss://) is not supported; use redis:// to a Redis on this host or a trusted network (or a TLS tunnel such as stunnel in front of it)"
        ));
    }
    if !s.starts_with("redis://") {
        return Err(format!(
            "expected \"\" (the spam directory) or a URL like \"redis://127.0.0.1:6379/0\", got {shown:?}"
        ));
    }
    redis::Client::open(s.as_str())
        .map(|_| s.clone())
        .map_err(|e| {
            // Not the password in clear on a terminal or in a log (walkBH
            // F7); one with / ? # @ or % must be percent-encoded.
            format!(
                "not a usable Redis URL {shown:?}: {}; write it as redis://[:PASSWORD@]HOST:PORT/DB (a password with /, ?, #, @ or % percent-encoded: %2F, %3F, %23, %40, %25)",
                crate::check::spam::store::redis_sentence(&e)
            )
        })
}

fn quarantine(ctx: &mut Ctx<'_>, raw: &RawQuarantine) -> Quarantine {
    let p = KeyPath::root("quarantine");
    Quarantine {
        max_age: get!(ctx, p, raw.max_age, positive_dur).unwrap_or(Dur::secs(30 * 86_400)),
        max_size: get!(ctx, p, raw.max_size, store_size).unwrap_or(ByteSize::gib(10)),
    }
}

fn bases(ctx: &mut Ctx<'_>, raw: &RawBases, data_dir: &Path) -> Bases {
    let p = KeyPath::root("bases");
    let source = parsed("a directory or file:// URL", |s| {
        match s.split_once("://") {
            Some((scheme, _)) if scheme != "file" => Err(format!(
            "expected a directory or a file:// URL, got {s:?} (only local sources are supported)"
        )),
            _ => Ok(s.to_string()),
        }
    });
    let bases = Bases {
        av: get!(ctx, p, raw.av, path).unwrap_or_else(|| data_dir.join("bases").join("av")),
        update_from: get!(ctx, p, raw.update_from, source).unwrap_or_default(),
        obsolete_after: get!(ctx, p, raw.obsolete_after, positive_dur)
            .unwrap_or(Dur::secs(7 * 86_400)),
    };
    // A typo here shows only as an hourly refusal in the log (walkS 14).
    if !bases.update_from.is_empty() {
        let dir = crate::check::bases::source_dir(&bases.update_from);
        if !dir.is_dir() {
            ctx.warn(
                &p.key("update_from"),
                format!(
                    "{} is not a directory here: the hourly update will be refused until it is",
                    dir.display()
                ),
            );
        }
    }
    bases
}

fn statistics(ctx: &mut Ctx<'_>, raw: &RawStatistics, data_dir: &Path) -> Statistics {
    let p = KeyPath::root("statistics");
    let stats = data_dir.join("stats");
    let top = |v: &Value| match uint32(v)? {
        0 => Err("must be at least 1".to_string()),
        n => Ok(n),
    };
    let statistics = Statistics {
        options: get_list!(ctx, p, raw.options, one_of(STATISTICS_OPTIONS))
            .unwrap_or_else(|| STATISTICS_OPTIONS.iter().map(|s| s.to_string()).collect()),
        destination: get!(ctx, p, raw.destination, path)
            .unwrap_or_else(|| stats.join("stats.json")),
        raw_destination: get!(ctx, p, raw.raw_destination, path)
            .unwrap_or_else(|| stats.join("raw.log")),
        write_interval: get!(ctx, p, raw.write_interval, positive_dur).unwrap_or(Dur::secs(60)),
        top: get!(ctx, p, raw.top, top).unwrap_or(10),
    };
    // Each write replaces the whole file and waits for its fsync
    // (walkAW F22: "1ms" passed).
    if statistics.write_interval.get() < std::time::Duration::from_secs(1) {
        ctx.warn(
            &p.key("write_interval"),
            format!(
                "{} rewrites the statistics file more than once a second, each time whole and waiting for the disk (fsync); give 1s or more (the file is for a reader by the minute: Prometheus and SNMP read the counters live)",
                statistics.write_interval
            ),
        );
    }
    statistics
}

fn snmp(ctx: &mut Ctx<'_>, raw: &RawSnmp) -> Snmp {
    let p = KeyPath::root("snmp");
    Snmp {
        services: get_list!(ctx, p, raw.services, one_of(SNMP_SERVICES))
            .unwrap_or_else(|| SNMP_SERVICES.iter().map(|s| s.to_string()).collect()),
        traps: get_list!(ctx, p, raw.traps, one_of(SNMP_TRAPS))
            .unwrap_or_else(|| SNMP_TRAPS.iter().map(|s| s.to_string()).collect()),
        alert_thresholds: ctx
            .map(
                &p.key("alert_thresholds"),
                raw.alert_thresholds.as_ref(),
                |k, v| {
                    if !SNMP_THRESHOLDS.contains(&k) {
                        return Err(format!(
                            "unknown threshold; thresholds: {}",
                            SNMP_THRESHOLDS.join(", ")
                        ));
                    }
                    // walkBE 10: a threshold that can never be crossed is
                    // an alert silently off, and the free space is a size
                    // like every other in the file.
                    match k {
                        "spool_free_bytes" => size(v).map(|b| b.0),
                        "infected_share_percent" | "dns_failed_percent" => match uint64(v)? {
                            n if n >= 100 => Err(format!(
                                "{n} never fires: the alert is raised above N %, so give 0 to 99"
                            )),
                            n => Ok(n),
                        },
                        _ => match uint64(v)? {
                            n if n > u64::from(u32::MAX) => Err(format!(
                                "{n} is more than mwAlertThresholdValue (Unsigned32) can carry: give at most {}",
                                u32::MAX
                            )),
                            n => Ok(n),
                        },
                    }
                },
            )
            .unwrap_or_else(|| {
                BTreeMap::from([
                    ("queue_messages".to_string(), 10_000),
                    ("infected_per_minute".to_string(), 100),
                ])
            }),
    }
}

fn agentx(ctx: &mut Ctx<'_>, raw: &RawAgentx) -> Agentx {
    let p = KeyPath::root("agentx");
    // "" turns the subagent off, as `metrics.listen = ""` turns /metrics
    // off (walkBE 8: a Prometheus-only site had a standing AgentX
    // problem in `mailward status`).
    let socket = parsed(
        "a socket like \"tcp:127.0.0.1:705\", or \"\" for no AgentX subagent",
        |s| {
            if s.is_empty() {
                return Ok(String::new());
            }
            AgentxEndpoint::parse(s)
                .map(|_| s.to_string())
                .map_err(|e| format!("{e} (\"\" turns the AgentX subagent off)"))
        },
    );
    let oid = parsed("a numeric OID like \"1.3.6.1.4.1.32473.25\"", |s| {
        parse_oid(s).map(|arcs| {
            arcs.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(".")
        })
    });
    // AgentX carries the timeout in one octet of seconds (RFC 2741, 6.2.1).
    let timeout = |v: &Value| match positive_dur(v)? {
        d if d.get().as_secs() > 255 || d.get().subsec_nanos() != 0 => {
            Err("must be whole seconds from 1s to 255s (AgentX sends it in one octet)".to_string())
        }
        d => Ok(d),
    };
    let agentx = Agentx {
        socket: get!(ctx, p, raw.socket, socket).unwrap_or_else(|| "tcp:127.0.0.1:705".into()),
        timeout: get!(ctx, p, raw.timeout, timeout).unwrap_or(Dur::secs(5)),
        retries: get!(ctx, p, raw.retries, uint32).unwrap_or(10),
        ping_interval: get!(ctx, p, raw.ping_interval, positive_dur).unwrap_or(Dur::secs(15)),
        root_oid: get!(ctx, p, raw.root_oid, oid).unwrap_or_else(|| "1.3.6.1.4.1.32473.25".into()),
    };
    // walkBE 11: "1.3.6.1.2.1..." for "1.3.6.1.4.1..." registers over
    // mib-2: the host agent's own objects hide Mailward's, and Mailward
    // answers for what the host agent lacks there.
    if !agentx.root_oid.starts_with("1.3.6.1.4.1.") {
        ctx.warn(
            &p.key("root_oid"),
            format!(
                "{} is not under enterprises (1.3.6.1.4.1): registered there, Mailward's objects would sit in another part of the tree, hidden by the host agent's own; give your enterprise number's subtree, like \"1.3.6.1.4.1.32473.25\" (and change the MIB to match)",
                agentx.root_oid
            ),
        );
    }
    agentx
}

fn metrics(ctx: &mut Ctx<'_>, raw: &RawMetrics) -> Metrics {
    let p = KeyPath::root("metrics");
    let listen = parsed("an address like \"127.0.0.1:9925\"", |s| {
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<SocketAddr>()
            .map_err(|_| {
                format!(
                    "expected an address like \"127.0.0.1:9925\", or \"\" to disable, got {s:?}"
                )
            })
            .and_then(|a| not_port_zero(a, "9925"))
            .map(Some)
    });
    Metrics {
        listen: match raw.listen {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9925))),
            Some(_) => get!(ctx, p, raw.listen, listen).flatten(),
        },
    }
}

fn milter(ctx: &mut Ctx<'_>, raw: &RawMilter) -> Milter {
    let p = KeyPath::root("milter");
    let listen = parsed("a milter socket", |s| {
        if s.is_empty() {
            Ok(None)
        } else {
            MilterListen::parse_key(s).map(Some)
        }
    });
    let max = |v: &Value| match uint32(v)? {
        0 => Err("must be at least 1".to_string()),
        n => Ok(n),
    };
    Milter {
        listen: get!(ctx, p, raw.listen, listen).flatten(),
        max_connections: get!(ctx, p, raw.max_connections, max).unwrap_or(128),
    }
}

fn log(ctx: &mut Ctx<'_>, raw: &RawLog) -> Log {
    let p = KeyPath::root("log");
    Log {
        destination: get!(
            ctx,
            p,
            raw.destination,
            parsed(LOG_DESTINATIONS, LogDestination::parse)
        )
        .unwrap_or(LogDestination::Stderr),
        options: get_list!(
            ctx,
            p,
            raw.options,
            parsed("an option like \"all.info\"", |s| {
                LogOption::parse(s).map(|_| s.to_string())
            })
        )
        .unwrap_or_else(|| vec!["all.info".to_string()]),
        format: get!(
            ctx,
            p,
            raw.format,
            parsed("\"text\" or \"json\"", LogFormat::parse)
        )
        .unwrap_or(LogFormat::Text),
        syslog_format: get!(
            ctx,
            p,
            raw.syslog_format,
            parsed("\"rfc3164\" or \"rfc5424\"", SyslogFormat::parse)
        )
        .unwrap_or(SyslogFormat::Rfc3164),
        rotate_size: get!(ctx, p, raw.rotate_size, size).unwrap_or(ByteSize::mib(10)),
        rotate_rounds: get!(ctx, p, raw.rotate_rounds, uint32).unwrap_or(5),
    }
}

/// The smallest `log.rotate_size` said nothing of: 1 KiB, a few lines
/// (the tests rotate at 2 KiB to see rotation happen).
const MIN_ROTATE_SIZE: u64 = 1024;

/// Converts and checks everything; problems are left in `ctx`.
pub fn build(ctx: &mut Ctx<'_>, raw: &RawConfig) -> Config {
    let server = server(ctx, &raw.server);
    let mut config = Config {
        origin: ctx.origin.to_string(),
        network: network(ctx, &raw.network, milter_only(&raw.milter)),
        access: access(ctx, &raw.access),
        limits: limits(ctx, &raw.limits),
        timeouts: timeouts(ctx, &raw.timeouts),
        route: routes(ctx, &raw.route),
        policy: policy(ctx, &raw.policy),
        group: groups(ctx, &raw.group),
        archive: archive(ctx, &raw.archive),
        quarantine: quarantine(ctx, &raw.quarantine),
        bases: bases(ctx, &raw.bases, &server.data_dir),
        spam: spam(ctx, &raw.spam, &server.data_dir),
        statistics: statistics(ctx, &raw.statistics, &server.data_dir),
        snmp: snmp(ctx, &raw.snmp),
        agentx: agentx(ctx, &raw.agentx),
        metrics: metrics(ctx, &raw.metrics),
        milter: milter(ctx, &raw.milter),
        log: log(ctx, &raw.log),
        server,
        warnings: Vec::new(),
    };
    // Left out, `admin_address` is the site's postmaster: the address an
    // administrator sets anyway (walkAD 1: the example address of the
    // defaults took every administrator notice).
    if raw.policy.admin_address.is_none() {
        config.policy.admin_address = config.server.postmaster.clone();
    }
    admin_addresses(ctx, &config, raw.policy.admin_address.is_some());
    templates(ctx, &mut config);
    cross_checks(ctx, &config);
    subject_prefixes(ctx, &config);
    depth_caps(ctx, &config);
    queue_floor_and_disk(ctx, &config);
    group_order(ctx, &config);
    listener_clashes(ctx, &config, raw);
    config
}

/// An `admin_address` that is an example address (RFC 2606 `example.com`,
/// `.net`, `.org`) in `[policy]` or a group that sends administrator
/// notices: every notice would go to a domain that takes no mail (walkAD
/// 1). Said once per key; where the key is left out, at `[policy]`'s,
/// naming `server.postmaster` it came from.
fn admin_addresses(ctx: &mut Ctx<'_>, config: &Config, policy_sets_it: bool) {
    let example = |address: &str| {
        let address = address.trim_end_matches('.').to_ascii_lowercase();
        let domain = address
            .rsplit_once('@')
            .map_or(address.as_str(), |(_, d)| d);
        ["example.com", "example.net", "example.org"]
            .iter()
            .any(|e| domain == *e || domain.ends_with(&format!(".{e}")))
    };
    let mut said: Vec<KeyPath> = Vec::new();
    let mut scopes: Vec<(KeyPath, Policy)> = vec![(KeyPath::root("policy"), config.policy.clone())];
    for (name, g) in &config.group {
        let path = if g.admin_address.is_some() {
            KeyPath::root("group").key(name)
        } else {
            KeyPath::root("policy")
        };
        scopes.push((path, g.effective(&config.policy)));
    }
    for (scope, p) in scopes {
        if p.notify_admin.is_empty() || !example(&p.admin_address) {
            continue;
        }
        let path = scope.key("admin_address");
        if said.contains(&path) {
            continue;
        }
        let from = if scope == KeyPath::root("policy") && !policy_sets_it {
            " (server.postmaster: admin_address is not set)"
        } else {
            ""
        };
        ctx.warn(
            &path,
            format!(
                "{}{from} is an example address: the administrator notices (notify_admin) would go there; set admin_address (or server.postmaster)",
                p.admin_address
            ),
        );
        said.push(path);
    }
}

/// The notification templates of `[policy]` and every group, read once
/// here and kept in the configuration (notices never read the files
/// again): a syntax error, an unknown variable or a template that cannot
/// be rendered is reported as TEMPLATE:LINE: problem.
fn templates(ctx: &mut Ctx<'_>, config: &mut Config) {
    // A relative directory is the configuration file's, as `file:` globs
    // are: the daemon runs in / under systemd, where a check-config run in
    // /etc/mailward had found it (walkV 12).
    let base = std::path::absolute(ctx.origin)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let resolve = |t: &mut TemplatesDir| {
        if !t.dir.is_empty() && Path::new(&t.dir).is_relative() {
            t.dir = base.join(&t.dir).display().to_string();
        }
    };
    resolve(&mut config.policy.notify_templates);
    for g in config.group.values_mut() {
        if let Some(t) = g.notify_templates.as_mut() {
            resolve(t);
        }
    }
    let mut dirs: Vec<(KeyPath, String)> = vec![(
        KeyPath::root("policy").key("notify_templates"),
        config.policy.notify_templates.dir.clone(),
    )];
    for (name, g) in &config.group {
        if let Some(dir) = &g.notify_templates {
            dirs.push((
                KeyPath::root("group").key(name).key("notify_templates"),
                dir.dir.clone(),
            ));
        }
    }
    let mut loaded: BTreeMap<String, TemplateTexts> = BTreeMap::new();
    for (path, dir) in dirs {
        if dir.is_empty() || loaded.contains_key(&dir) {
            continue;
        }
        if let Some(problem) = not_a_templates_dir(Path::new(&dir)) {
            ctx.report(&path, problem);
            loaded.insert(dir, TemplateTexts::new());
            continue;
        }
        misnamed_templates(ctx, &path, Path::new(&dir));
        let (texts, problems) = crate::policy::notify::load_dir(Path::new(&dir));
        for (file, p) in problems {
            if file == dir {
                ctx.report(&path, p.problem);
            } else {
                ctx.problems.push(ConfigProblem {
                    file,
                    line: p.line,
                    key: String::new(),
                    problem: p.problem,
                });
            }
        }
        loaded.insert(dir, texts);
    }
    let fill = |t: &mut TemplatesDir| {
        if let Some(texts) = loaded.get(&t.dir) {
            t.texts = texts.clone();
        }
    };
    fill(&mut config.policy.notify_templates);
    for g in config.group.values_mut() {
        if let Some(t) = g.notify_templates.as_mut() {
            fill(t);
        }
    }
}

/// A file in a `notify_templates` directory that is no template name is
/// never read: the built-in template is used in its place, which a typo
/// (`recipient.txt`) hid (walkO 14). Hidden files and editor backups
/// (`~`) are left alone.
fn misnamed_templates(ctx: &mut Ctx<'_>, path: &KeyPath, dir: &Path) {
    let names = crate::policy::notify::template_files();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut odd: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && !n.ends_with('~') && !names.contains(&n.as_str()))
        .collect();
    odd.sort();
    for name in odd {
        let hint = super::closest(&name, &names)
            .map(|n| format!(" (did you mean {n}?)"))
            .unwrap_or_default();
        ctx.warn(
            path,
            format!(
                "{} is not read: the templates are {}; for the others the built-in ones are used{hint}",
                dir.join(&name).display(),
                names.join(", ")
            ),
        );
    }
}

/// A `limits.min_queue_free_space` that the spool's file system cannot
/// leave free with room for a message to spare refuses every message
/// (`452 4.3.1`) from the start: the default 100 MiB on a container's
/// 64 MiB volume does (walkW 7). Said at check-config, start and reload,
/// before the first refusal. A data directory not made yet is looked up
/// at its nearest existing parent; a file system that cannot be read is
/// not said.
fn queue_floor_and_disk(ctx: &mut Ctx<'_>, config: &Config) {
    let floor = config.limits.min_queue_free_space.0;
    let Some(dir) = config.server.data_dir.ancestors().find(|d| d.exists()) else {
        return;
    };
    let Ok(st) = nix::sys::statvfs::statvfs(dir) else {
        return;
    };
    #[allow(clippy::unnecessary_cast)]
    let total = (st.blocks() as u64).saturating_mul(st.fragment_size() as u64);
    let message = config.limits.max_message_size.0;
    if total == 0 || floor.saturating_add(message) <= total {
        return;
    }
    let size = |b: u64| crate::ops::status::bytes(b);
    let problem = if floor >= total {
        format!(
            "{} is more than the whole file system of server.data_dir ({}, {} in all): every new message gets 452 4.3.1 (see mailward status). Lower it, or give the spool a larger volume",
            size(floor),
            config.server.data_dir.display(),
            size(total)
        )
    } else {
        format!(
            "{} leaves at most {} of the file system of server.data_dir ({}, {} in all) to the queue, less than limits.max_message_size ({}): a message larger than that gets 452 4.3.1 even when the queue is empty. Lower it, or give the spool a larger volume",
            size(floor),
            size(total - floor),
            config.server.data_dir.display(),
            size(total),
            size(message)
        )
    };
    ctx.warn(
        &KeyPath::root("limits").key("min_queue_free_space"),
        problem,
    );
}

/// A status in `mark_subject` without a prefix in the (merged)
/// `subject_prefix` table is marked `[as/spam]`, the status itself: valid,
/// but not what anyone chose (walkO 12). Said once per table: `[policy]`,
/// and a group that sets either key.
/// A `max_scan_depth` above the unpacker's cap is taken as the cap: said,
/// so that nobody counts on the deeper setting (walkS finding 11).
fn depth_caps(ctx: &mut Ctx<'_>, config: &Config) {
    let cap = crate::check::unpack::DEPTH_CAP;
    let mut scopes = vec![(KeyPath::root("policy"), config.policy.max_scan_depth)];
    for (name, g) in &config.group {
        if let Some(depth) = g.max_scan_depth {
            scopes.push((KeyPath::root("group").key(name), depth));
        }
    }
    for (path, depth) in scopes.into_iter().filter(|(_, d)| *d > cap) {
        ctx.warn(
            &path.key("max_scan_depth"),
            format!("{depth} is scanned as {cap}: nesting is capped at {cap} whatever the setting"),
        );
    }
}

fn subject_prefixes(ctx: &mut Ctx<'_>, config: &Config) {
    // (the table, the key a warning about a status is put at, the policy)
    let mut scopes: Vec<(KeyPath, &str, Policy)> = vec![(
        KeyPath::root("policy"),
        "mark_subject",
        config.policy.clone(),
    )];
    for (name, g) in &config.group {
        if g.mark_subject.is_some() || g.subject_prefix.is_some() {
            let key = if g.mark_subject.is_some() {
                "mark_subject"
            } else {
                "subject_prefix"
            };
            scopes.push((
                KeyPath::root("group").key(name),
                key,
                g.effective(&config.policy),
            ));
        }
    }
    for (path, key, policy) in scopes {
        let unprefixed: Vec<&str> = STATUSES
            .iter()
            .copied()
            .filter(|s| !s.ends_with("/all"))
            .filter(|s| statuses_cover(&policy.mark_subject, s))
            .filter(|s| !policy.subject_prefix.contains_key(*s))
            .collect();
        for s in unprefixed {
            ctx.warn(
                &path.key(key),
                format!(
                    "{s} is marked but subject_prefix has no prefix for it: its Subject gets \"[{s}]\"; \
                     add \"{s}\" = \"...\" to subject_prefix"
                ),
            );
        }
        for key in policy.subject_prefix.keys().filter(|k| k.ends_with("/all")) {
            ctx.warn(
                &path.key("subject_prefix").key(key),
                format!(
                    "a prefix for {key} is never used: a message has one status, never {key}; \
                     give the prefix of each status"
                ),
            );
        }
    }
}

/// Groups are tried in the order of their names, not of the file: a
/// `senders` group named before a `recipients` group takes that group's
/// recipients in mail from its senders, and of two groups whose
/// `recipients` overlap the first by name gets the common ones (walkO 9).
/// Valid, but easily not what the file's order suggests: said with both
/// groups' names, once per pair.
fn group_order(ctx: &mut Ctx<'_>, config: &Config) {
    let groups: Vec<(&String, &Group)> = config.group.iter().collect();
    for (i, (first, a)) in groups.iter().enumerate() {
        let later_by_rcpt: Vec<&str> = groups[i + 1..]
            .iter()
            .filter(|(_, b)| !b.recipients.is_empty())
            .map(|(name, _)| name.as_str())
            .collect();
        if !a.senders.is_empty() && !later_by_rcpt.is_empty() {
            let them = match later_by_rcpt.as_slice() {
                [one] => format!("group {one}"),
                [rest @ .., last] => format!("groups {} and {last}", rest.join(", ")),
                [] => String::new(),
            };
            ctx.warn(
                &KeyPath::root("group").key(first).key("senders"),
                format!(
                    "group {first} is tried before {them} (groups are tried in alphabetical \
                     order of their names): mail from {first}'s senders goes by {first}'s policy \
                     for every recipient, also those of {them}; rename a group if they should \
                     keep their own policy"
                ),
            );
        }
        for (later, b) in &groups[i + 1..] {
            let overlap = a.recipients.iter().find_map(|x| {
                b.recipients
                    .iter()
                    .find(|y| entries_overlap(x, y))
                    .map(|y| (x, y))
            });
            if let Some((x, y)) = overlap {
                ctx.warn(
                    &KeyPath::root("group").key(later).key("recipients"),
                    format!(
                        "{} overlaps {} of group {first}, which is tried first (groups are tried \
                         in alphabetical order of their names): the recipients both match go by \
                         {first}'s policy, not {later}'s",
                        show_entry(y),
                        show_entry(x)
                    ),
                );
            }
        }
    }
}

/// A `senders`/`recipients` entry as written.
fn show_entry(e: &GroupEntry) -> String {
    match e {
        GroupEntry::Net(net) => format!("\"ip {net}\""),
        GroupEntry::Address(p) => format!("{:?}", p.as_str()),
    }
}

/// Whether two `recipients` entries can match the same recipient: two
/// globs some address matches both of, or two networks one of which holds
/// the other.
fn entries_overlap(a: &GroupEntry, b: &GroupEntry) -> bool {
    match (a, b) {
        (GroupEntry::Address(a), GroupEntry::Address(b)) => globs_overlap(a.as_str(), b.as_str()),
        (GroupEntry::Net(a), GroupEntry::Net(b)) => a.contains(b) || b.contains(a),
        _ => false,
    }
}

/// Whether some string matches both globs (`*`, `?`, case ignored), by
/// dynamic programming over the two patterns' positions.
fn globs_overlap(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().flat_map(char::to_lowercase).collect();
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    // can[i][j]: some string matches both a[i..] and b[j..].
    let mut can = vec![vec![false; b.len() + 1]; a.len() + 1];
    for i in (0..=a.len()).rev() {
        for j in (0..=b.len()).rev() {
            let both = match (a.get(i), b.get(j)) {
                (None, None) => true,
                (Some('*'), _) if can[i + 1][j] => true,
                (_, Some('*')) if can[i][j + 1] => true,
                // A star takes one more character of the other side.
                (Some('*'), Some(_)) => can[i][j + 1],
                (Some(_), Some('*')) => can[i + 1][j],
                (Some(x), Some(y)) => (*x == *y || *x == '?' || *y == '?') && can[i + 1][j + 1],
                _ => false,
            };
            can[i][j] = both;
        }
    }
    can[0][0]
}

/// Why `dir` cannot be a `notify_templates` directory, naming it and what
/// is wrong with it (missing, a file, unreadable) and the way back to the
/// built-in templates; `None` when it is a directory.
fn not_a_templates_dir(dir: &Path) -> Option<String> {
    let why = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => return None,
        Ok(_) => "is not a directory".to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
        Err(e) => format!("cannot be read ({e})"),
    };
    Some(format!(
        "{} {why}: expected a directory of notification templates (sender.txt, recipients.txt, \
         admin.txt), or \"\" for the built-in templates",
        dir.display()
    ))
}

/// Whether a next hop `host`:`port` is one of this gateway's own SMTP
/// listeners: an address of `listen_on`, or a loopback address (or
/// "localhost") on the port of one that listens on every address.
fn is_own_listener(host: &str, port: u16, listen_on: &[SocketAddr]) -> bool {
    let ip = host.parse::<std::net::IpAddr>().ok();
    let local = host.eq_ignore_ascii_case("localhost") || ip.is_some_and(|ip| ip.is_loopback());
    listen_on
        .iter()
        .any(|l| l.port() == port && (ip == Some(l.ip()) || (l.ip().is_unspecified() && local)))
}

/// Rules between keys, and what needs the file system.
fn cross_checks(ctx: &mut Ctx<'_>, config: &Config) {
    // walkBF F7: a route to the gateway's own port (a typo of the next
    // hop's) sent each message round 50 times, then bounced it as a loop.
    for (i, route) in config.route.iter().enumerate() {
        if let NextHop::Direct { host, port } = &route.to {
            if is_own_listener(host, *port, &config.network.listen_on) {
                ctx.warn(
                    &KeyPath::root("route").index(i).key("to"),
                    format!(
                        "[{host}]:{port} is this gateway's own listener (network.listen_on): its mail would come back here, go round until the hop count is spent, and bounce as a loop; give the next hop's address and port"
                    ),
                );
            }
        }
    }
    if let Some(file) = &config.spam.rules {
        match std::fs::read_to_string(file) {
            Err(e) => ctx.report(
                &KeyPath::root("spam").key("rules"),
                format!("cannot read {}: {e}", file.display()),
            ),
            Ok(text) => {
                if let Err(problems) = crate::check::spam::rules::parse(&text) {
                    for (line, problem) in problems {
                        ctx.problems.push(ConfigProblem {
                            file: file.display().to_string(),
                            line,
                            key: String::new(),
                            problem: bounded(problem),
                        });
                    }
                }
            }
        }
    }
    let net = KeyPath::root("network");
    match (&config.network.tls_certificate, &config.network.tls_key) {
        (Some(_), None) => ctx.report(&net.key("tls_certificate"), "set `tls_key` too, or neither"),
        (None, Some(_)) => ctx.report(&net.key("tls_key"), "set `tls_certificate` too, or neither"),
        _ => {}
    }
    for (key, file) in [
        ("tls_certificate", &config.network.tls_certificate),
        ("tls_key", &config.network.tls_key),
    ] {
        if let Some(file) = file {
            match std::fs::metadata(file) {
                Ok(m) if m.is_file() => {}
                Ok(_) => ctx.report(&net.key(key), format!("{} is not a file", file.display())),
                Err(e) => ctx.report(
                    &net.key(key),
                    format!("cannot read {}: {e}", file.display()),
                ),
            }
        }
    }

    let t = &config.timeouts;
    if t.min_backoff > t.max_backoff {
        ctx.report(
            &KeyPath::root("timeouts").key("min_backoff"),
            format!(
                "must not be longer than timeouts.max_backoff ({})",
                t.max_backoff
            ),
        );
    }

    // A store smaller than the largest message accepted: one such message
    // takes it over max_size, and the expiry removes every entry, the new
    // one included (walkAY T8: an archive emptied by one large notice).
    let quarantining = !config.policy.quarantine.is_empty()
        || config
            .group
            .values()
            .any(|g| g.quarantine.as_ref().is_some_and(|q| !q.is_empty()));
    let archiving = config.archive.incoming || config.archive.outgoing;
    for (table, size, used) in [
        ("quarantine", config.quarantine.max_size, quarantining),
        ("archive", config.archive.max_size, archiving),
    ] {
        if used && size <= config.limits.max_message_size {
            ctx.warn(
                &KeyPath::root(table).key("max_size"),
                format!(
                    "{size} is not more than limits.max_message_size ({}): one message that large takes the {table} over max_size, and every entry is removed, that one included",
                    config.limits.max_message_size
                ),
            );
        }
    }

    // A few lines' worth: the log is rotated at nearly every line and its
    // files hold the last few lines only (walkAW F22: "1B" passed). Said
    // when a file is rotated at all: the log file, the raw records.
    let log = &config.log;
    let rotated = matches!(log.destination, LogDestination::File(_))
        || config.statistics.options.iter().any(|o| o == "raw");
    if rotated && log.rotate_size.0 != 0 && log.rotate_size.0 < MIN_ROTATE_SIZE {
        ctx.warn(
            &KeyPath::root("log").key("rotate_size"),
            format!(
                "a file of {} holds a few lines at most: the log is rotated at nearly every line, and its {} files keep the last few (\"0\" never rotates; 10MiB is the default)",
                crate::text::counted(log.rotate_size.0, "octet"),
                log.rotate_rounds
            ),
        );
    }

    let l = &config.limits;
    if l.max_session_size < l.max_message_size {
        ctx.report(
            &KeyPath::root("limits").key("max_session_size"),
            format!(
                "must be at least limits.max_message_size ({})",
                l.max_message_size
            ),
        );
    }

    if let LogDestination::File(file) = &config.log.destination {
        if file.is_dir() {
            ctx.report(
                &KeyPath::root("log").key("destination"),
                format!("{} is a directory", file.display()),
            );
        }
    }

    // `run` cannot make or lock a data directory that is a file or lies
    // under one (exit 71, "File exists"), while check-config said valid
    // (walkAW F12). The nearest part of the path that exists tells.
    let data_dir = &config.server.data_dir;
    if let Some(file) = data_dir
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .find(|a| a.exists())
        .filter(|a| !a.is_dir())
    {
        ctx.report(
            &KeyPath::root("server").key("data_dir"),
            format!(
                "{} is a file, not a directory: set server.data_dir to a directory, or move the file away",
                file.display()
            ),
        );
    }
}

/// Two listeners on one address and port: `run` would fail at its start
/// with "Address already in use" after check-config said the file is
/// valid (walkH 8.4). An unspecified address (`0.0.0.0`, `::`) takes the
/// port on every address, so it clashes with any other on that port. The
/// problem is reported at the later key written in the file (a default
/// value is not written, so the other one is blamed).
fn listener_clashes(ctx: &mut Ctx<'_>, config: &Config, raw: &RawConfig) {
    let net = KeyPath::root("network").key("listen_on");
    // (where, its index in a list, the address, whether the file sets it)
    let mut listeners: Vec<(KeyPath, Option<usize>, SocketAddr, bool)> = Vec::new();
    for (i, a) in config.network.listen_on.iter().enumerate() {
        listeners.push((net.clone(), Some(i), *a, raw.network.listen_on.is_some()));
    }
    if let Some(MilterListen::Inet(a)) = &config.milter.listen {
        let path = KeyPath::root("milter").key("listen");
        listeners.push((path, None, *a, raw.milter.listen.is_some()));
    }
    if let Some(a) = config.metrics.listen {
        let path = KeyPath::root("metrics").key("listen");
        listeners.push((path, None, a, raw.metrics.listen.is_some()));
    }
    let name = |(path, _, _, _): &(KeyPath, Option<usize>, SocketAddr, bool)| path.to_string();
    for later in 1..listeners.len() {
        for earlier in 0..later {
            let (a, b) = (listeners[earlier].2, listeners[later].2);
            let overlaps = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
            if a.port() != b.port() || a.port() == 0 || !overlaps {
                continue;
            }
            let (blamed, other) = if listeners[later].3 || !listeners[earlier].3 {
                (&listeners[later], &listeners[earlier])
            } else {
                (&listeners[earlier], &listeners[later])
            };
            let problem = format!(
                "{} is also taken by {} ({}): each listener needs an address and port of its own",
                blamed.2,
                name(other),
                other.2
            );
            match blamed.1 {
                Some(i) => ctx.report_elem(&blamed.0, i, problem),
                None => ctx.report(&blamed.0, problem),
            }
        }
    }
}

#[cfg(test)]
mod queue_floor_tests {
    use super::super::tests::warnings;

    /// walkW 7: `min_queue_free_space = "20MiB"` on an 8 MiB disk was
    /// taken without a word, and then every MAIL got 452 4.3.1.
    #[test]
    fn a_queue_floor_the_disk_cannot_leave_free_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("not-made-yet");
        let text = |floor: &str| {
            format!(
                "[server]\ndata_dir = \"{}\"\n\n[limits]\nmin_queue_free_space = \"{floor}\"\n",
                data.display()
            )
        };
        let w = warnings(&text("1000TiB"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("mailward.toml:5: warning: limits.min_queue_free_space: 1000.0 TiB is more than the whole file system of server.data_dir ("),
            "{w:?}"
        );
        assert!(w[0].contains("every new message gets 452 4.3.1"), "{w:?}");
        assert!(warnings(&text("1MiB")).is_empty());
    }

    /// walkY 7: `stress_command = "1h"` with `command = "8s"` was taken
    /// without a word, though stress mode only shortens deadlines.
    #[test]
    fn a_stress_timeout_not_shorter_than_its_normal_one_is_a_warning() {
        let w = warnings("[timeouts]\ncommand = \"8s\"\nstress_data = \"2h\"\n");
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("mailward.toml:2: warning: timeouts.command: timeouts.stress_command (10s) is not shorter than timeouts.command (8s)"), "{w:?}");
        assert!(w[1].starts_with("mailward.toml:3: warning: timeouts.stress_data: timeouts.stress_data (2h) is not shorter than timeouts.data"), "{w:?}");
        assert!(warnings("[timeouts]\ncommand = \"60s\"\n").is_empty());
    }
}

#[cfg(test)]
mod admin_address_tests {
    use super::super::parse;
    use super::super::tests::warnings;

    /// walkAD 1: left out, `admin_address` is `server.postmaster`, not
    /// the example address of the defaults; an example address that gets
    /// the administrator notices is a warning at its line.
    #[test]
    fn admin_notices_go_to_the_postmaster_unless_said_otherwise() {
        let c = parse(
            "[server]\npostmaster = \"postmaster@b.test\"\n[policy]\nnotify_admin = [\"av/all\"]\n",
            "mailward.toml",
        )
        .unwrap();
        assert_eq!(c.policy.admin_address, "postmaster@b.test");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = parse(
            "[server]\npostmaster = \"postmaster@b.test\"\n[policy]\nadmin_address = \"sec@b.test\"\n",
            "mailward.toml",
        )
        .unwrap();
        assert_eq!(c.policy.admin_address, "sec@b.test");

        let w = warnings(
            "[policy]\nnotify_admin = [\"av/all\"]\nadmin_address = \"admin@example.com\"\n",
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("mailward.toml:3: warning: policy.admin_address: admin@example.com is an example address: the administrator notices (notify_admin) would go there"),
            "{w:?}"
        );
        // Not set, and the postmaster is the example one.
        let w = warnings("[policy]\nnotify_admin = [\"av/all\"]\n");
        assert!(
            w.len() == 1
                && w[0].contains("postmaster@example.com (server.postmaster: admin_address is not set) is an example address"),
            "{w:?}"
        );
        // No administrator notices: no warning.
        assert!(warnings("[policy]\nadmin_address = \"admin@example.com\"\n").is_empty());
        // A group's own address, for its own notices.
        let w = warnings(
            "[server]\npostmaster = \"pm@b.test\"\n[group.m]\nrecipients = [\"*@m.test\"]\nnotify_admin = [\"av/all\"]\nadmin_address = \"sec@m.example.org\"\n",
        );
        assert!(
            w.len() == 1 && w[0].contains("group.m.admin_address: sec@m.example.org is an example"),
            "{w:?}"
        );
    }
}

#[cfg(test)]
mod route_order_tests {
    use super::super::tests::warnings;

    /// walkAO 2: a `match = "*"` route appended after the default
    /// configuration's own catch-all was never used, and `check-config`
    /// said the configuration was valid without a word.
    #[test]
    fn a_route_an_earlier_one_covers_is_a_warning_naming_both() {
        let two = |first: &str, second: &str| {
            warnings(&format!(
                "[[route]]\nmatch = \"{first}\"\nto = \"[127.0.0.1:2526]\"\n\n[[route]]\nmatch = \"{second}\"\nto = \"[127.0.0.1]:10026\"\n"
            ))
        };
        let w = two("*", "*");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("mailward.toml:6: warning: route[1].match: never used: route[0] (match = \"*\") comes first"),
            "{w:?}"
        );
        assert_eq!(two("*", "*@example.com").len(), 1);
        assert_eq!(two("*@Example.com", "*@example.COM").len(), 1);
        // The usual order, specific first, is not warned about.
        assert!(two("*@example.com", "*").is_empty());
        assert!(two("*@example.com", "*@example.org").is_empty());
    }
}

#[cfg(test)]
mod idn_pattern_tests {
    /// walkAR F2: patterns written with U-labels match the A-label form
    /// every envelope address has; one IDNA would change is an error at
    /// its line.
    #[test]
    fn u_label_patterns_are_taken_as_a_labels_and_mapped_ones_refused_with_their_line() {
        let text = "[network]\nprotected_domains = [\"\u{4f8b}\u{5b50}.\u{6d4b}\u{8bd5}\"]\n\
                    [access]\nrcpt_rules = [\"deny address *@b\u{fc}cher.example\"]\n\
                    [spam]\nblacklist = [\"*@m\u{fc}nchen.test\"]\n\
                    [[route]]\nmatch = \"*@\u{4f8b}\u{5b50}.\u{6d4b}\u{8bd5}\"\nto = \"[127.0.0.1:2526]\"\n";
        let c = match super::super::parse(text, "mailward.toml") {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert!(c.network.is_protected("xn--fsqu00a.xn--0zwm56d"));
        assert!(c.route[0].pattern.matches("x@xn--fsqu00a.xn--0zwm56d"));
        let subject = |a| super::super::Subject {
            ip: "192.0.2.1".parse().unwrap(),
            host: None,
            address: Some(a),
        };
        assert!(c.access.rcpt_rules[0].matches(&subject("a@xn--bcher-kva.example")));
        assert!(crate::check::spam::blacklisted(
            &c,
            "192.0.2.1".parse().unwrap(),
            "x@xn--mnchen-3ya.test"
        ));

        let bad = "[access]\nrcpt_rules = [\"deny address *@nou\u{ad}.example\"]\n\
                   [spam]\nblacklist = [\"*@spam\u{200b}mer.example\"]\n\
                   [network]\nprotected_domains = [\"nou\u{3002}example\"]\n";
        let p: Vec<String> = match super::super::parse(bad, "mailward.toml") {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        };
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].starts_with("mailward.toml:2: access.rcpt_rules:")
                && p[0].contains("IDNA removes or replaces")
                && p[0].contains("it stands for `nou.example`"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("mailward.toml:4: spam.blacklist:"),
            "{p:?}"
        );
        assert!(
            p[2].starts_with("mailward.toml:6: network.protected_domains:"),
            "{p:?}"
        );
    }
}
