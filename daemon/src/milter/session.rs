//! One milter connection: option negotiation, then the MTA's SMTP
//! sessions one after another (SMFIC_QUIT_NC starts the next), each with
//! its transactions. The message is rebuilt from the header and body
//! callbacks exactly as the MTA has it (CRLF line ends; with
//! SMFIP_HDR_LEADSPC the header values keep their own leading space), and
//! at end of message it goes through the same checks and plans as SMTP.
//!
//! The envelope comes from the callbacks and the macros Postfix sends:
//! the client from SMFIC_CONNECT (or `{client_addr}`), `i` (Postfix's
//! queue ID, logged as `upstream_id`), `{auth_authen}` (logged; a client
//! that authenticated is one of ours: no SPF, DKIM/DMARC or DNSBL score),
//! `{tls_version}` (the message came over TLS). SPF is checked at MAIL
//! and the scoring DNSBL zones at connect, as in an SMTP session; access
//! rules, relay control and refusing DNSBLs are the MTA's job here.

use crate::envelope::{Envelope, QueueId, Recipient};
use crate::events::{
    self, MessageRejected, RecipientRejected, RecipientsOverLimit, Refused, RefusedRecipient,
    RefusedTransaction, RejectReason, TransactionRefused,
};
use crate::gateway::Gateway;
use crate::policy::milter::{Change, Outcome};
use crate::standing::Standing;
use mailward_metrics::event::MilterError;
use mailward_milter::{
    negotiate, read_packet, replace_body, Actions, Client, Command, Protocol, ReplyCode, Response,
    MAX_PACKET,
};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// A connected socket of either kind.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What we ask the MTA for: verdict headers and subject marks (add,
/// insert, change), part edits (the body) and per-group blocks (delete
/// recipients). Not quarantine: the copy is ours (policy/milter.rs).
const ACTIONS: Actions =
    Actions(Actions::ADDHDRS.0 | Actions::CHGHDRS.0 | Actions::CHGBODY.0 | Actions::DELRCPT.0);
/// Unknown commands are not needed; header values come with their leading
/// space, so that the message is rebuilt byte for byte. The DATA step is
/// taken (and answered) although nothing is done with it: skipped, Postfix
/// still sends its macros alone, and over TCP the next packet then waits
/// for our delayed ACK (Nagle's algorithm): about 40 ms per message (found
/// by bench/postfix-bench.sh).
const PROTOCOL: Protocol = Protocol(Protocol::NOUNKNOWN.0 | Protocol::HDR_LEADSPC.0);

/// How often the MTA is told, while a message is being judged, that the
/// verdict is still to come: well within any milter timeout an MTA is
/// likely to be given (Postfix's defaults: 30 s per command, 300 s for the
/// message), at a cost of 5 octets a second for the rare message that
/// takes longer than a second.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Recipients taken per message in milter mode: far above any MTA's own
/// limit (Postfix's `smtpd_recipient_limit` is 1,000 by default), a bound
/// on memory only; `limits.max_rcpts_per_message` does not apply here.
const MILTER_MAX_RCPTS: usize = 10_000;

/// How the log names that bound.
const MILTER_RCPTS_BOUND: &str = "the milter's 10000 per message";

/// The reply to a recipient past [`MILTER_MAX_RCPTS`].
const TOO_MANY_RCPTS: &str = "452 4.5.3 Too many recipients";

/// One message being received.
#[derive(Default)]
struct Transaction {
    from: String,
    rcpts: Vec<String>,
    /// MAIL came with `SMTPUTF8` (RFC 6531): the envelope says so, for a
    /// release from quarantine and the notices.
    smtputf8: bool,
    spf: Option<crate::auth::Spf>,
    message: Vec<u8>,
    /// Octets the MTA sent, also past `limits.max_message_size` (the
    /// size logged for a message refused as too big).
    received: u64,
    /// Over `limits.max_message_size`: refused at end of message.
    too_big: bool,
    /// `Received:` fields in the header: at `limits.max_hops` or more the
    /// message is refused at end of message as a mail loop, as in an SMTP
    /// session. Postfix sends its milters the header without its own
    /// `Received:` line, so these are the hops before it, the count an
    /// SMTP session of ours takes before adding its own line.
    hops: u32,
    /// The reason of the first recipient we refused: the transaction
    /// counts once in `mailward_messages_rejected_total` with it if it ends
    /// without a message (abort, a new MAIL, the end of the session), as
    /// an SMTP session's does.
    refused_rcpt: Option<RejectReason>,
    /// Recipients refused past [`MILTER_MAX_RCPTS`]: the first is logged
    /// on its own, the rest once when the transaction ends (walkAI 7).
    over_bound: u32,
    /// The MTA's queue ID when the first of those was refused (the `i`
    /// macro of the RCPT step), for the line that counts the rest.
    over_bound_upstream: Option<String>,
}

impl Transaction {
    /// Logs the recipients refused past the bound after the first, once.
    fn log_over_bound(&self, client: IpAddr) {
        RecipientsOverLimit {
            client,
            limit: MILTER_RCPTS_BOUND,
            from: &self.from,
            upstream_id: self.over_bound_upstream.as_deref(),
            count: self.over_bound,
            reply: TOO_MANY_RCPTS,
        }
        .emit();
    }
}

pub struct Session {
    gw: Arc<Gateway>,
    peer: String,
    /// Agreed at negotiation.
    protocol: Protocol,
    actions: Actions,
    macros: HashMap<String, String>,
    client: Option<IpAddr>,
    /// The scoring DNSBL zones that list the client; None until the first
    /// MAIL of the SMTP session has asked them.
    dnsbl_listed: Option<Vec<String>>,
    helo: String,
    tx: Option<Transaction>,
}

/// Why a connection ends early.
#[derive(Debug, thiserror::Error)]
enum Fault {
    #[error(transparent)]
    Wire(#[from] mailward_milter::WireError),
    #[error("malformed packet: {0}")]
    Decode(#[from] mailward_milter::DecodeError),
    #[error("negotiation failed: {0}")]
    Negotiate(#[from] mailward_milter::NegotiateError),
    #[error("writing to the MTA: {0}")]
    Write(std::io::Error),
    #[error("no command from the MTA within {0:?}")]
    Idle(std::time::Duration),
}

impl Fault {
    /// The `reason` label of mailward_milter_connection_errors_total.
    fn reason(&self) -> MilterError {
        use mailward_milter::WireError;
        match self {
            Fault::Wire(WireError::Io(_)) | Fault::Write(_) => MilterError::Io,
            Fault::Wire(_) | Fault::Decode(_) | Fault::Negotiate(_) => MilterError::Malformed,
            Fault::Idle(_) => MilterError::Idle,
        }
    }
}

impl Session {
    pub fn new(gw: Arc<Gateway>, peer: String) -> Session {
        Session {
            gw,
            peer,
            protocol: Protocol::NONE,
            actions: Actions::NONE,
            macros: HashMap::new(),
            client: None,
            dnsbl_listed: None,
            helo: String::new(),
            tx: None,
        }
    }

    pub async fn run(mut self, mut stream: Box<dyn Stream>) {
        events::MilterConnectionOpened { peer: &self.peer }.emit(&self.gw.stats);
        let outcome = self.serve(&mut stream).await;
        // However the connection ended, a transaction under way ends too.
        self.end_transaction();
        let error = outcome
            .as_ref()
            .err()
            .map(|e| (e.reason(), e as &dyn std::fmt::Display));
        events::MilterConnectionClosed {
            peer: &self.peer,
            error,
        }
        .emit(&self.gw.stats);
        let _ = stream.shutdown().await;
    }

    async fn serve(&mut self, stream: &mut Box<dyn Stream>) -> Result<(), Fault> {
        let mut shutdown = self.gw.shutdown.clone();
        loop {
            let idle = quiet_allowance(&self.gw.config());
            let packet = tokio::select! {
                p = tokio::time::timeout(idle, read_packet(stream, MAX_PACKET)) => match p {
                    Ok(p) => p?,
                    Err(_) => return Err(Fault::Idle(idle)),
                },
                // Between messages only: a message under way is finished.
                _ = shutdown.wait_for(|s| *s), if self.tx.is_none() => return Ok(()),
            };
            let Some(packet) = packet else {
                return Ok(());
            };
            let command = Command::decode(&packet)?;
            let wants_reply = command.expects_reply(self.protocol);
            let progress = match command {
                Command::EndOfMessage(_) => true,
                // SPF and the scoring DNSBL zones wait on DNS here, up to
                // timeouts.dns (walkAF 5).
                Command::Mail { .. } => self.mta_takes_progress_anywhere(),
                _ => false,
            };
            let (responses, go_on) = if progress {
                self.handle_with_progress(command, stream).await?
            } else {
                self.handle(command).await?
            };
            if wants_reply {
                let mut out = Vec::new();
                for r in &responses {
                    if let Err(e) = r.encode(&mut out) {
                        tracing::error!(target: "smtp", peer = %self.peer, response = r.name(), error = %e,
                            "Cannot encode a milter response; it is left out.");
                    }
                }
                stream.write_all(&out).await.map_err(Fault::Write)?;
                stream.flush().await.map_err(Fault::Write)?;
            }
            if !go_on {
                return Ok(());
            }
        }
    }

    /// Whether the MTA waits on SMFIR_PROGRESS in reply to any command, not
    /// only at end of message: Postfix does (each one restarts its
    /// `milter_command_timeout`), and names itself in the `v` macro of the
    /// connect step (its default `milter_connect_macros`). The protocol as
    /// libmilter and sendmail know it allows progress at end of message
    /// only, so for another MTA a slow MAIL step still has to fit its
    /// command timeout.
    fn mta_takes_progress_anywhere(&self) -> bool {
        ["v", "{v}"]
            .iter()
            .filter_map(|name| self.macros.get(*name))
            .any(|v| v.trim_start().starts_with("Postfix"))
    }

    /// Answers end of message (and, with Postfix, MAIL, whose SPF and
    /// DNSBL look-ups wait on DNS), telling the MTA every [`PROGRESS_EVERY`]
    /// that the checks are still under way (SMFIR_PROGRESS), so that a
    /// message judged for longer than the MTA's timeout for the reply
    /// (Postfix's `milter_content_timeout` or `milter_command_timeout`,
    /// sendmail's `T=E:`) is waited for rather than given its
    /// `milter_default_action`. The checks are
    /// bounded by `timeouts.scan` and `timeouts.dns` themselves. When the
    /// MTA cannot be written to, the checks still finish (a quarantine
    /// copy is not left half made) and the final reply's write fails.
    async fn handle_with_progress(
        &mut self,
        command: Command,
        stream: &mut Box<dyn Stream>,
    ) -> Result<(Vec<Response>, bool), Fault> {
        let mut progress = Vec::new();
        if let Err(e) = Response::Progress.encode(&mut progress) {
            tracing::error!(target: "smtp", peer = %self.peer, error = %e,
                "Cannot encode SMFIR_PROGRESS; the MTA gets the verdict only.");
            return self.handle(command).await;
        }
        let peer = self.peer.clone();
        let work = self.handle(command);
        tokio::pin!(work);
        let start = tokio::time::Instant::now() + PROGRESS_EVERY;
        let mut tick = tokio::time::interval_at(start, PROGRESS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut writable = true;
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = tick.tick(), if writable => {
                    let sent = tokio::time::timeout(PROGRESS_EVERY, async {
                        stream.write_all(&progress).await?;
                        stream.flush().await
                    })
                    .await;
                    if !matches!(sent, Ok(Ok(()))) {
                        tracing::debug!(target: "smtp", peer = %peer,
                            "Cannot tell the MTA that the checks go on; they finish all the same.");
                        writable = false;
                    }
                }
            }
        }
    }

    /// Answers one command; false when the connection ends.
    async fn handle(&mut self, command: Command) -> Result<(Vec<Response>, bool), Fault> {
        let cont = |r| Ok((vec![r], true));
        match command {
            Command::OptNeg(offer) => {
                let n = negotiate(&offer, ACTIONS, PROTOCOL)?;
                if !n.missing_actions.is_empty() {
                    tracing::warn!(target: "smtp", peer = %self.peer, missing = %n.missing_actions,
                        "The MTA does not offer every action the policy may need; those are left out.");
                }
                self.protocol = n.reply.protocol;
                self.actions = n.reply.actions;
                Ok((vec![Response::OptNeg(n.reply)], true))
            }
            Command::Macro(m) => {
                // Postfix sends `i` only once it has a queue ID (with
                // smtpd_delay_open_until_valid_rcpt, after the first
                // recipient it accepted): at a new MAIL the last
                // message's ID would otherwise stand in for it.
                if m.for_command == b'M' {
                    self.macros.remove("i");
                }
                self.macros.extend(m.pairs);
                Ok((Vec::new(), true))
            }
            Command::Connect(c) => {
                self.client = match c.client {
                    Client::Inet { ip, .. } => Some(ip.to_canonical()),
                    _ => self
                        .macros
                        .get("{client_addr}")
                        .and_then(|a| a.parse::<IpAddr>().ok())
                        .map(|ip| ip.to_canonical()),
                };
                // The scoring DNSBL zones are asked at the first MAIL, not
                // here: whether the client authenticated with the MTA
                // ({auth_authen}) is known only then, and one of ours is
                // not looked up at all.
                self.dnsbl_listed = None;
                cont(Response::Continue)
            }
            Command::Helo { name } => {
                self.helo = name;
                cont(Response::Continue)
            }
            Command::Mail { sender, args } => {
                let from = one_form(&strip_brackets(&sender));
                let smtputf8 = args.iter().any(|a| a.eq_ignore_ascii_case("SMTPUTF8"));
                let cfg = self.gw.config();
                // A client that authenticated with the MTA (submission) is
                // one of ours: SPF would fail its mail from home, and the
                // DNSBLs list home connections. For anyone else SPF and
                // the scoring zones (once per SMTP session) are asked
                // together, so a slow DNS costs one wait, not two.
                let (spf, listed) = match self.client {
                    Some(ip) => {
                        let standing = Standing::of(&cfg, ip, self.sasl_user().as_deref());
                        let ask_lists = self.dnsbl_listed.is_none() && standing.is_outside();
                        let (spf, listed) = tokio::join!(
                            self.gw.spf(&cfg, ip, &standing, &self.helo, &from),
                            async {
                                if ask_lists {
                                    Some(self.gw.scoring_dnsbl(&cfg, ip, &standing).await)
                                } else {
                                    None
                                }
                            }
                        );
                        (spf, listed)
                    }
                    None => (None, None),
                };
                if listed.is_some() {
                    self.dnsbl_listed = listed;
                }
                // A MAIL starts a new transaction: the last one, if any,
                // ended without a message.
                self.end_transaction();
                // A client whitelisted by address (a forwarder) is spared
                // the refusal, as in SMTP mode: the fail stays a test.
                if let Some(reply) =
                    crate::auth::spf_refusal(cfg.spam.spf, spf.as_ref(), self.client_ip())
                        .filter(|_| !crate::check::spam::whitelisted_client(&cfg, self.client_ip()))
                {
                    // Postfix's queue ID if it has one yet (not with its
                    // default smtpd_delay_open_until_valid_rcpt).
                    let tx = RefusedTransaction {
                        from: &from,
                        upstream_id: self.upstream_id(),
                        ..RefusedTransaction::default()
                    };
                    self.rejected(RejectReason::Policy, &reply, &tx);
                    return cont(reply_code(&reply));
                }
                self.tx = Some(Transaction {
                    from,
                    spf,
                    smtputf8,
                    ..Transaction::default()
                });
                cont(Response::Continue)
            }
            Command::Rcpt { recipient, .. } => {
                // Not `limits.max_rcpts_per_message`: the MTA bounds the
                // recipients (Postfix's smtpd_recipient_limit, 1,000) and
                // delivers, and Postfix counts each RCPT a milter refuses
                // as an error, hanging up after smtpd_hard_error_limit (20):
                // a client sending 121 recipients in one transaction was
                // cut off every time, and its message never went (walkAF
                // 1). Only a runaway MTA meets this bound.
                let max = MILTER_MAX_RCPTS;
                let client = self.client_ip();
                let upstream_id = self.upstream_id().map(str::to_string);
                if let Some(tx) = self.tx.as_mut().filter(|tx| tx.rcpts.len() >= max) {
                    let reply = TOO_MANY_RCPTS;
                    tx.refused_rcpt.get_or_insert(RejectReason::Limit);
                    tx.over_bound = tx.over_bound.saturating_add(1);
                    let refusal = RecipientRejected {
                        reason: RejectReason::Limit,
                        client,
                        reply,
                        from: Some(tx.from.as_str()),
                    };
                    if tx.over_bound == 1 {
                        // Named as Postfix's milter-reject line names it.
                        let to = strip_brackets(&recipient);
                        let rcpt = RefusedRecipient {
                            to: &to,
                            upstream_id: upstream_id.as_deref(),
                        };
                        refusal.emit_for(&self.gw.stats, &rcpt);
                        tx.over_bound_upstream = upstream_id;
                    } else {
                        // Counted one by one, logged once for the
                        // transaction (Transaction::log_over_bound).
                        refusal.count(&self.gw.stats);
                    }
                    return cont(reply_code(reply));
                }
                if let Some(tx) = &mut self.tx {
                    tx.rcpts.push(one_form(&strip_brackets(&recipient)));
                }
                cont(Response::Continue)
            }
            Command::Data | Command::Unknown { .. } => cont(Response::Continue),
            Command::Header { name, value } => {
                let leading = self.protocol.contains(Protocol::HDR_LEADSPC);
                let max = self.gw.config().limits.max_message_size.0;
                let tx = self.tx.get_or_insert_with(Transaction::default);
                let mut line = Vec::with_capacity(name.len() + value.len() + 4);
                line.extend_from_slice(name.as_bytes());
                line.push(b':');
                if !leading {
                    line.push(b' ');
                }
                // Folded lines come with bare LF: the message is CRLF.
                for (i, part) in value.split(|&b| b == b'\n').enumerate() {
                    if i > 0 {
                        line.extend_from_slice(b"\r\n");
                    }
                    line.extend_from_slice(part.strip_suffix(b"\r").unwrap_or(part));
                }
                line.extend_from_slice(b"\r\n");
                // The SMTP path's reader of field names, so that both
                // count `Received :` alike (RFC 5322 4.5.3).
                if crate::check::mime_repair::field_name(&line)
                    .is_some_and(|n| n.eq_ignore_ascii_case(b"received"))
                {
                    tx.hops = tx.hops.saturating_add(1);
                }
                append(tx, &line, max);
                cont(Response::Continue)
            }
            Command::EndOfHeaders => {
                let max = self.gw.config().limits.max_message_size.0;
                let tx = self.tx.get_or_insert_with(Transaction::default);
                append(tx, b"\r\n", max);
                cont(Response::Continue)
            }
            Command::Body(chunk) => {
                let max = self.gw.config().limits.max_message_size.0;
                let tx = self.tx.get_or_insert_with(Transaction::default);
                append(tx, &chunk, max);
                cont(Response::Continue)
            }
            Command::EndOfMessage(chunk) => {
                let max = self.gw.config().limits.max_message_size.0;
                let mut tx = self.tx.take().unwrap_or_default();
                append(&mut tx, &chunk, max);
                let responses = self.end_of_message(tx).await;
                // That message's queue ID is not the next one's.
                self.macros.remove("i");
                Ok((responses, true))
            }
            Command::Abort => {
                self.end_transaction();
                self.macros.remove("i");
                Ok((Vec::new(), true))
            }
            Command::QuitNc => {
                // A new SMTP session on this connection: forget the last.
                self.macros.clear();
                self.client = None;
                self.dnsbl_listed = None;
                self.helo.clear();
                self.end_transaction();
                Ok((Vec::new(), true))
            }
            Command::Quit => Ok((Vec::new(), false)),
        }
    }

    /// `{auth_authen}`: who the client authenticated as with the MTA
    /// (Postfix sends it with the MAIL macros), if it did.
    fn sasl_user(&self) -> Option<String> {
        self.macros
            .get("{auth_authen}")
            .filter(|u| !u.is_empty())
            .cloned()
    }

    /// `i`: the MTA's queue ID, once it has one for this message.
    fn upstream_id(&self) -> Option<&str> {
        self.macros
            .get("i")
            .map(String::as_str)
            .filter(|i| !i.is_empty())
    }

    fn client_ip(&self) -> IpAddr {
        self.client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    /// A transaction refused: its MAIL, or its message at end of message
    /// (counted once; the recipients it had refused are not counted again).
    fn rejected(&self, reason: RejectReason, reply: &str, tx: &RefusedTransaction<'_>) {
        MessageRejected {
            reason,
            client: self.client_ip(),
            reply,
            refused: Refused::Transaction,
            cause: None,
        }
        .emit_for(&self.gw.stats, tx);
    }

    /// The transaction under way, if any, ends without a message: counted
    /// as refused if we refused some of its recipients.
    fn end_transaction(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        tx.log_over_bound(self.client_ip());
        if let Some(reason) = tx.refused_rcpt {
            TransactionRefused {
                reason,
                client: self.client_ip(),
            }
            .emit(&self.gw.stats);
        }
    }

    /// The checks, the plans, and what the MTA is told.
    async fn end_of_message(&mut self, tx: Transaction) -> Vec<Response> {
        tx.log_over_bound(self.client_ip());
        let hops = tx.hops;
        if tx.rcpts.is_empty() && !tx.too_big {
            // Nothing to decide for (the MTA refused every recipient).
            return vec![Response::Continue];
        }
        let mut env = Envelope::new(
            QueueId::generate(),
            self.client_ip(),
            self.helo.clone(),
            tx.from,
        );
        env.milter = true;
        env.smtputf8 = tx.smtputf8;
        env.upstream_id = self.upstream_id().map(str::to_string);
        env.rcpts = tx.rcpts.into_iter().map(Recipient::new).collect();
        env.size = tx.received;
        env.eight_bit = tx.message.iter().any(|&b| b >= 0x80);
        env.tls = self.macros.contains_key("{tls_version}");
        env.sasl_user = self.sasl_user();
        if env.standing(&self.gw.config()).is_outside() {
            env.dnsbl_listed = self.dnsbl_listed.clone().unwrap_or_default();
        }
        env.auth.spf = tx.spf;
        tracing::info!(target: "smtp", queue_id = %env.id, upstream_id = env.upstream_id.as_deref().unwrap_or("-"),
            client = %env.client_ip, from = %env.mail_from, rcpts = env.rcpts.len(), size = env.size,
            auth = self.macros.get("{auth_authen}").map_or("-", String::as_str),
            "Message from the MTA.");
        let refused = RefusedTransaction {
            queue_id: Some(&env.id),
            upstream_id: env.upstream_id.as_deref(),
            from: &env.mail_from,
            rcpts: env.rcpts.len(),
        };
        if tx.too_big {
            let reply = "552 5.3.4 Message size exceeds fixed limit";
            self.rejected(RejectReason::Size, reply, &refused);
            return vec![reply_code(reply)];
        }
        if hops >= self.gw.config().limits.max_hops {
            let reply = "554 5.4.6 Too many hops (mail loop?)";
            self.rejected(RejectReason::Limit, reply, &refused);
            return vec![reply_code(reply)];
        }
        let raw = Arc::new(tx.message);
        let verdict = crate::policy::execute::judge(&self.gw, &env, raw.clone(), true).await;
        let leading = self.protocol.contains(Protocol::HDR_LEADSPC);
        match crate::policy::milter::carry_out(&self.gw, &env, raw, verdict, leading).await {
            Outcome::Reject(reply) => {
                self.rejected(RejectReason::Policy, &reply, &refused);
                vec![reply_code(&reply)]
            }
            Outcome::TempFail(reply) => {
                self.rejected(RejectReason::Tempfail, &reply, &refused);
                vec![reply_code(&reply)]
            }
            Outcome::Accept(changes) => {
                let mut out = self.changes(&env, changes);
                out.push(Response::Accept);
                out
            }
            Outcome::Discard(changes) => {
                let mut out = self.changes(&env, changes);
                out.push(Response::Discard);
                out
            }
        }
    }

    /// The modifications as responses, leaving out (with a log line)
    /// those the MTA did not agree to.
    fn changes(&self, env: &Envelope, changes: Vec<Change>) -> Vec<Response> {
        let mut out = Vec::new();
        for c in changes {
            let (needs, responses) = match c {
                Change::InsertHeader { index, name, value } => (
                    Actions::ADDHDRS,
                    vec![Response::InsertHeader { index, name, value }],
                ),
                Change::AddHeader { name, value } => {
                    (Actions::ADDHDRS, vec![Response::AddHeader { name, value }])
                }
                Change::ChangeHeader { name, index, value } => (
                    Actions::CHGHDRS,
                    vec![Response::ChangeHeader { index, name, value }],
                ),
                Change::ReplaceBody(body) => (Actions::CHGBODY, replace_body(&body)),
                Change::DeleteRcpt(rcpt) => (Actions::DELRCPT, vec![Response::DelRcpt { rcpt }]),
            };
            if self.actions.contains(needs) {
                out.extend(responses);
            } else {
                tracing::warn!(target: "smtp", queue_id = %env.id, action = %needs,
                    "The MTA did not agree to this change; it is left out.");
            }
        }
        out
    }
}

/// How long the MTA may send nothing before the connection is closed as
/// dead. The MTA is silent while its client uploads the message (Postfix
/// sends SMFIC_DATA at DATA and the content only after the final dot) and
/// while its client idles with NOOP or RSET, and it bounds its client
/// itself (Postfix: `smtpd_timeout`, 300 s, per command). So the wait is
/// the longest DATA phase an SMTP session of ours may have: `timeouts.data`
/// plus `limits.max_message_size` at `limits.min_data_rate` (about 12
/// hours by default), and never less than `timeouts.command`. It is there
/// for an MTA that hangs or vanishes, not for slow clients.
fn quiet_allowance(cfg: &crate::config::Config) -> std::time::Duration {
    let data = cfg.timeouts.data.get();
    let data = match cfg.limits.min_data_rate {
        0 => data,
        rate => data.saturating_add(std::time::Duration::from_secs(
            cfg.limits.max_message_size.0 / u64::from(rate),
        )),
    };
    data.max(cfg.timeouts.command.get())
}

/// Adds `bytes` to the message, up to `max` octets.
fn append(tx: &mut Transaction, bytes: &[u8], max: u64) {
    tx.received = tx.received.saturating_add(bytes.len() as u64);
    if tx.too_big {
        return;
    }
    if (tx.message.len() + bytes.len()) as u64 > max {
        tx.too_big = true;
        tx.message = Vec::new();
        return;
    }
    tx.message.extend_from_slice(bytes);
}

/// An address in the one form Mailward keeps (its domain as A-labels,
/// [`crate::text::canonical_domain`]), as an SMTP session stores it, so
/// that the access rules, lists and groups see what routing sees (walkAR
/// F10). The MTA accepted the address: one whose domain has no canonical
/// form is kept as the MTA gave it (it is the MTA's to refuse).
fn one_form(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => match crate::text::canonical_domain(domain) {
            Ok(d) => format!("{local}@{d}"),
            Err(_) => address.to_string(),
        },
        None => address.to_string(),
    }
}

/// `<a@b>` -> `a@b`; `<>` -> "".
fn strip_brackets(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s)
        .to_string()
}

/// SMFIR_REPLYCODE for `reply`, or a plain reject/tempfail when the text
/// cannot be sent as it is.
fn reply_code(reply: &str) -> Response {
    match ReplyCode::new(reply) {
        Ok(r) => Response::ReplyCode(r),
        Err(_) if reply.starts_with('4') => Response::Tempfail,
        Err(_) => Response::Reject,
    }
}

#[cfg(test)]
mod tests {
    use super::quiet_allowance;
    use std::time::Duration;

    /// walkX finding 2: the MTA is silent while its client uploads, so
    /// the bound is a DATA phase of the largest message, not one command.
    #[test]
    fn the_quiet_bound_is_a_whole_data_phase_of_the_largest_message() {
        let cfg = crate::config::parse("", "d.toml").unwrap();
        // 10 min + 20 MiB at 500 octets/s.
        assert_eq!(
            quiet_allowance(&cfg),
            Duration::from_secs(600 + 20 * 1024 * 1024 / 500)
        );
        assert!(
            quiet_allowance(&cfg) > Duration::from_secs(300),
            "smtpd_timeout"
        );
        let no_rate = crate::config::parse("[limits]\nmin_data_rate = 0\n", "r.toml").unwrap();
        assert_eq!(quiet_allowance(&no_rate), Duration::from_secs(600));
        let long_command = crate::config::parse(
            "[limits]\nmin_data_rate = 0\n[timeouts]\ncommand = \"15m\"\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(quiet_allowance(&long_command), Duration::from_secs(900));
    }
}
