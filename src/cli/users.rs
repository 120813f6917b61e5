//! `sectl user add|list|delete|rotate`, `sectl whoami` and `sectl audit [verify]`:
//! on the embedded store as the local administrator (the data directory's
//! permissions are the boundary), or through a server's API as the token's user.
//! A new or rotated token is printed once, alone on stdout (`-o json`: name, role,
//! token); only its hash is stored.

use super::{Backend, Context, Format};
use crate::auth::{self, audit, manage, Actor, Role};
use crate::client::PREFIX;
use anyhow::anyhow;
use serde_json::{json, Value};
use std::process::ExitCode;

/// Examples for `user --help`.
pub const USER_EXAMPLES: &str = "Examples:
  # An operator with rights on two systems and both SUs of their SU cluster
  sectl user add ops1 --role operator --systems vm12prod,vm13test --server-units ABGSE701,ABGSE702

  # A BS2000 administrator; the token is printed once
  TOKEN=$(sectl user add bs2 --role bs2000-admin)

  sectl user list
  sectl user rotate ops1
  sectl user delete ops1";

/// Examples for `audit --help`.
pub const AUDIT_EXAMPLES: &str = "Examples:
  # The last hour of one user's actions
  sectl audit --user ops1 --since 1h

  # Check the hash chain (exit 1 names the first broken record)
  sectl audit verify";

/// Actions of `sectl user`.
#[derive(clap::Subcommand, Debug)]
pub enum UserAction {
    /// Add a user; prints its token (once) alone on stdout.
    Add {
        /// Name (a-z, 0-9, '.', '_', '-').
        name: String,
        /// Role.
        #[arg(long, value_enum)]
        role: Role,
        /// Systems (VMDefinition names) an operator may act on, comma-separated.
        #[arg(long, value_delimiter = ',')]
        systems: Vec<String>,
        /// Server units an operator may act on, comma-separated.
        #[arg(long, value_delimiter = ',')]
        server_units: Vec<String>,
        /// Output format (json: name, role, token).
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// List users (never their tokens).
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Delete a user (never the last administrator).
    Delete {
        /// Name.
        name: String,
    },
    /// Give a user a new token (printed once); the old one stops working.
    Rotate {
        /// Name.
        name: String,
        /// Output format (json: name, role, token).
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
}

/// `audit` arguments.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// `verify`: check the hash chain.
    #[command(subcommand)]
    pub action: Option<AuditAction>,
    /// Only this user's records.
    #[arg(long)]
    pub user: Option<String>,
    /// Only records of the last DURATION (e.g. 30m, 1h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table", global = true)]
    pub output: Format,
}

/// Actions of `sectl audit`.
#[derive(clap::Subcommand, Debug)]
pub enum AuditAction {
    /// Check the hash chain; exit 0 intact, 1 broken (naming the first broken record).
    Verify,
}

/// The embedded store, with `admin` made at first start.
fn embedded(ctx: &mut Context) -> anyhow::Result<Option<std::sync::Arc<dyn crate::store::Store>>> {
    let data_dir = ctx.data_dir.clone();
    match ctx.store()? {
        Backend::Embedded { store, .. } => {
            crate::server::admin_token(&data_dir, store.as_ref())?;
            Ok(Some(store.clone()))
        }
        Backend::Remote(_) => Ok(None),
    }
}

fn remote(ctx: &mut Context) -> anyhow::Result<&crate::client::Client> {
    ctx.remote()?.ok_or_else(|| anyhow!("no server"))
}

fn print_token(name: &str, role: &str, token: &str, output: Format) -> anyhow::Result<()> {
    match output {
        Format::Table => println!("{token}"),
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(&json!({"name": name, "role": role, "token": token}))?)
        }
        Format::Yaml => print!("{}", crate::manifest::to_yaml(&json!({"name": name, "role": role, "token": token}))),
    }
    Ok(())
}

/// `sectl user ...`.
pub fn user(ctx: &mut Context, action: &UserAction) -> anyhow::Result<ExitCode> {
    let local = embedded(ctx)?;
    let who = Actor::local();
    match action {
        UserAction::Add { name, role, systems, server_units, output } => {
            let (n, r, token) = match &local {
                Some(store) => {
                    let (u, t) = manage::add(store.as_ref(), &who, name, *role, systems.clone(), server_units.clone())?;
                    (u.name, u.role.to_string(), t)
                }
                None => {
                    let body = json!({"name": name, "role": role, "systems": systems, "serverUnits": server_units});
                    let v = remote(ctx)?.call_any("POST", &format!("{PREFIX}/users"), Some(&body))?;
                    token_of(&v)?
                }
            };
            print_token(&n, &r, &token, *output)?;
        }
        UserAction::Rotate { name, output } => {
            let (n, r, token) = match &local {
                Some(store) => {
                    let (u, t) = manage::rotate(store.as_ref(), &who, name)?;
                    if manage::is_file_admin(&u.name) {
                        crate::server::write_admin_token(&ctx.data_dir, &t)?;
                    }
                    (u.name, u.role.to_string(), t)
                }
                None => token_of(&remote(ctx)?.call_any("POST", &format!("{PREFIX}/users/{name}/rotate"), None)?)?,
            };
            print_token(&n, &r, &token, *output)?;
        }
        UserAction::Delete { name } => {
            match &local {
                Some(store) => {
                    manage::delete(store.as_ref(), &who, name)?;
                }
                None => {
                    remote(ctx)?.call_any("DELETE", &format!("{PREFIX}/users/{name}"), None)?;
                }
            }
            println!("user {name} deleted");
        }
        UserAction::List { output } => {
            let items: Vec<Value> = match &local {
                Some(store) => auth::users::list(store.as_ref())?.iter().map(auth::users::User::public).collect(),
                None => remote(ctx)?.call_any("GET", &format!("{PREFIX}/users"), None)?["items"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            };
            print_users(&items, *output)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn token_of(v: &Value) -> anyhow::Result<(String, String, String)> {
    let s = |k: &str| v[k].as_str().map(str::to_string).ok_or_else(|| anyhow!("the server's answer has no {k}"));
    Ok((s("name")?, s("role")?, s("token")?))
}

fn joined(v: &Value) -> String {
    let parts: Vec<&str> = v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(",")
    }
}

fn print_users(items: &[Value], output: Format) -> anyhow::Result<()> {
    match output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&json!({"items": items}))?),
        Format::Yaml => print!("{}", crate::manifest::to_yaml(&json!({"items": items}))),
        Format::Table => {
            let mut text = format!("{:<20} {:<14} {:<30} {:<30} CREATED\n", "NAME", "ROLE", "SYSTEMS", "SERVER-UNITS");
            for u in items {
                text.push_str(&format!(
                    "{:<20} {:<14} {:<30} {:<30} {}\n",
                    u["name"].as_str().unwrap_or(""),
                    u["role"].as_str().unwrap_or(""),
                    joined(&u["systems"]),
                    joined(&u["serverUnits"]),
                    u["created"].as_str().unwrap_or("")
                ));
            }
            super::get::emit(&text)?;
        }
    }
    Ok(())
}

/// `sectl whoami`.
pub fn whoami(ctx: &mut Context, output: Format) -> anyhow::Result<ExitCode> {
    let (v, note) = match embedded(ctx)? {
        Some(_) => (
            Actor::local().user.public(),
            " (embedded mode: the local administrator; the data directory's permissions are the boundary)",
        ),
        None => (remote(ctx)?.call_any("GET", &format!("{PREFIX}/whoami"), None)?, ""),
    };
    match output {
        Format::Table => {
            let mut line = format!("{} ({})", v["name"].as_str().unwrap_or(""), v["role"].as_str().unwrap_or(""));
            if v["role"] == "operator" {
                line.push_str(&format!(
                    " systems {} server units {}",
                    joined(&v["systems"]),
                    joined(&v["serverUnits"])
                ));
            }
            println!("{line}{note}");
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        Format::Yaml => print!("{}", crate::manifest::to_yaml(&v)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `sectl audit [verify]`.
pub fn audit(ctx: &mut Context, a: &AuditArgs) -> anyhow::Result<ExitCode> {
    if let Some(AuditAction::Verify) = a.action {
        if a.user.is_some() || a.since.is_some() {
            return Err(super::UsageError(
                "`audit verify` checks the whole chain; --user and --since select records to show".into(),
            )
            .into());
        }
        return verify(ctx, a.output);
    }
    if let Some(d) = &a.since {
        crate::sim::parse_duration(d).map_err(|e| super::UsageError(format!("--since: {e}")))?;
    }
    let items: Vec<Value> = match embedded(ctx)? {
        Some(store) => {
            let recs =
                crate::server::access::select(audit::records(store.as_ref())?, a.user.as_deref(), a.since.as_deref())
                    .map_err(|e| anyhow!(e))?;
            recs.iter().map(|r| serde_json::to_value(r).expect("a record serialises")).collect()
        }
        None => {
            let mut q = Vec::new();
            if let Some(u) = &a.user {
                q.push(format!("user={}", enc(u)));
            }
            if let Some(s) = &a.since {
                q.push(format!("since={}", enc(s)));
            }
            let path = format!("{PREFIX}/audit{}{}", if q.is_empty() { "" } else { "?" }, q.join("&"));
            remote(ctx)?.call_any("GET", &path, None)?["items"].as_array().cloned().unwrap_or_default()
        }
    };
    match a.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&json!({"items": items}))?),
        Format::Yaml => print!("{}", crate::manifest::to_yaml(&json!({"items": items}))),
        Format::Table => {
            let mut text = format!(
                "{:<6} {:<24} {:<12} {:<7} {:<12} {:<32} {:<18} {:<8} REASON\n",
                "SEQ", "TIME", "USER", "SOURCE", "VERB", "KIND/NAME", "SERVER-UNITS", "RESULT"
            );
            for r in &items {
                text.push_str(&format!(
                    "{:<6} {:<24} {:<12} {:<7} {:<12} {:<32} {:<18} {:<8} {}\n",
                    r["seq"].as_u64().unwrap_or(0),
                    r["time"].as_str().unwrap_or(""),
                    r["user"].as_str().unwrap_or(""),
                    r["source"].as_str().unwrap_or(""),
                    r["verb"].as_str().unwrap_or(""),
                    format!("{}/{}", r["kind"].as_str().unwrap_or(""), r["name"].as_str().unwrap_or("")),
                    joined(&r["serverUnits"]),
                    r["result"].as_str().unwrap_or(""),
                    r["reason"].as_str().unwrap_or("")
                ));
            }
            super::get::emit(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn verify(ctx: &mut Context, output: Format) -> anyhow::Result<ExitCode> {
    let v: Value = match embedded(ctx)? {
        Some(store) => serde_json::to_value(audit::verify(store.as_ref())?)?,
        None => remote(ctx)?.call_any("GET", &format!("{PREFIX}/audit/verify"), None)?,
    };
    let broken = !v["broken"].is_null();
    match output {
        Format::Table if broken => eprintln!(
            "error: the audit log is broken at record {}: {} ({} records before it verified)",
            v["broken"]["seq"],
            v["broken"]["reason"].as_str().unwrap_or(""),
            v["checked"]
        ),
        Format::Table => println!("ok: the audit log's hash chain is intact ({} records)", v["checked"]),
        Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        Format::Yaml => print!("{}", crate::manifest::to_yaml(&v)),
    }
    Ok(if broken { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
