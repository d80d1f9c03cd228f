//! The `mailward` binary: parses the command line and hands over to the
//! library. Exit statuses follow sysexits: 64 bad configuration, 69 daemon
//! unreachable, 71 cannot start.
#![forbid(unsafe_code)]

use clap::Parser;
use mailward::admin::{self, QueueItem, Request};
use mailward::cli::{Cli, Command, ConfigCommand, QueueCommand};
use mailward::config;
use std::path::Path;
use std::process::ExitCode;

const EX_CONFIG: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;
const EX_OSERR: u8 = 71;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(arg) => run(arg.config.as_deref()),
        Command::CheckConfig(arg) => match config::load(arg.config.as_deref()) {
            Ok(c) => {
                println!("{}: configuration is valid", c.origin);
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(1)
            }
        },
        Command::Config(ConfigCommand::Default) => {
            print!("{}", config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Command::Queue(q) => queue(q),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("mailward: cannot start the runtime: {e}");
            ExitCode::from(EX_OSERR)
        })
}

fn run(path: Option<&Path>) -> ExitCode {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("mailward: refusing to start with an invalid configuration (see `mailward check-config`).");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let _guard = match mailward::logging::init(&config.log) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("mailward: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(mailward::run::run(config, path.map(Path::to_path_buf))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(target: "app", error = %e, "Mailward cannot run.");
            eprintln!("mailward: {e}");
            ExitCode::from(EX_OSERR)
        }
    }
}

fn queue(cmd: QueueCommand) -> ExitCode {
    mailward::logging::init_cli();
    let (path, req, json) = match &cmd {
        QueueCommand::List { config, json } => (&config.config, Request::QueueList, *json),
        QueueCommand::Show { id, config } => (&config.config, Request::QueueShow { id: id.clone() }, false),
        QueueCommand::Flush { config } => (&config.config, Request::QueueFlush, false),
        QueueCommand::Remove { id, config } => (&config.config, Request::QueueRemove { id: id.clone() }, false),
    };
    let cfg = match config::load(path.as_deref()) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let data = match rt.block_on(admin::call(&cfg.server.admin_socket, &req)) {
        Ok(d) => d,
        Err(e @ admin::AdminError::Refused(_)) => {
            eprintln!("mailward: {e}");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("mailward: {e}");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    match cmd {
        QueueCommand::List { .. } if json => {
            println!("{data}");
        }
        QueueCommand::List { .. } => {
            let items: Vec<QueueItem> = serde_json::from_value(data).unwrap_or_default();
            print_table(&items);
        }
        QueueCommand::Show { .. } => {
            if let Some(env) = data.get("envelope") {
                if let Ok(item) = serde_json::from_value::<QueueItem>(env.clone()) {
                    print_table(std::slice::from_ref(&item));
                }
            }
            println!();
            print!("{}", data.get("message").and_then(|m| m.as_str()).unwrap_or(""));
        }
        QueueCommand::Flush { .. } => {
            let n = data.get("scheduled").and_then(|n| n.as_u64()).unwrap_or(0);
            println!("{n} message(s) scheduled for delivery now.");
        }
        QueueCommand::Remove { id, .. } => println!("{id} removed."),
    }
    ExitCode::SUCCESS
}

fn print_table(items: &[QueueItem]) {
    if items.is_empty() {
        println!("The queue is empty.");
        return;
    }
    let now = chrono::Utc::now().timestamp();
    println!("{:<16}  {:>9}  {:>8}  {:>8}  SENDER / RECIPIENTS", "QUEUE ID", "SIZE", "AGE", "NEXT TRY");
    for it in items {
        let sender = if it.sender.is_empty() { "<>" } else { &it.sender };
        let next = if it.next_attempt <= now { "now".to_string() } else { human(it.next_attempt - now) };
        println!("{:<16}  {:>9}  {:>8}  {:>8}  {}", it.id, it.size, human(now - it.received_at), next, sender);
        for r in &it.recipients {
            let detail = r.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
            println!("{:>50}  -> {} [{}]{}", "", r.address, r.state, detail);
        }
    }
    println!("{} message(s)", items.len());
}

fn human(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}
