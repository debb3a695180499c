//! Command-line interface: the subcommands and their flags.

mod bulk;
mod client;
mod serve;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// trough: a SQLite-shard federation. Big data, small databases.
#[derive(Debug, Parser)]
#[command(name = "trough", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run router, reader, writer and synchronizer in one process on the embedded defaults
    /// (local object store and coordination under --data-dir).
    Serve(serve::ServeArgs),
    /// Run a cluster node with the given roles (needs --consul).
    Node {
        /// Comma-separated roles: reader (with its local sync), writer, sync-server.
        /// Every node also answers the HTTP API and forwards what it cannot serve.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<RoleArg>,
        #[command(flatten)]
        args: serve::ServeArgs,
    },
    /// Run a read node: verified local copies answering read queries, kept in line with the
    /// assignment by the node's local synchronizer (needs --consul).
    Reader(serve::ServeArgs),
    /// Run a write node: holds write leases and live writable segments (needs --consul).
    Writer(serve::ServeArgs),
    /// Run a synchronizer. With --server: a leader candidate that computes assignments. Without:
    /// local mode, which runs inside the read node that serves the copies (same as `reader`).
    Sync {
        /// Server mode: compete for leadership and assign segments to nodes.
        #[arg(long)]
        server: bool,
        #[command(flatten)]
        args: serve::ServeArgs,
    },
    /// Run a router only: holds no data, forwards every request to the nodes (needs --consul).
    Router(serve::ServeArgs),
    /// Manage segments on a running trough (upload, list, show, promote).
    #[command(subcommand)]
    Segment(SegmentCommand),
    /// Run a read-only SQL query against one segment, or over many (--all, --segments) with
    /// exact merging, and print the rows as JSON.
    Query(QueryArgs),
    /// Manage schemas that writable segments are provisioned from.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Manage access tokens (docs/security.md).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token; its secret is printed once.
    #[command(
        after_help = "Examples:\n  trough token create --description crawler --grant write:crawl-* --grant read:*\n  trough token create --grant read:public-* --cluster status --expires-in 86400"
    )]
    Create {
        /// What the token is for.
        #[arg(long, default_value = "")]
        description: String,
        /// A segment grant RIGHT:PATTERN (read, write, admin or deny; an id, a prefix* or *).
        #[arg(long = "grant", value_name = "RIGHT:PATTERN")]
        grants: Vec<String>,
        /// A cluster right: status, metrics or tokens.
        #[arg(long = "cluster", value_name = "RIGHT")]
        cluster: Vec<String>,
        /// Seconds until the token expires (default: never).
        #[arg(long, value_name = "SECS")]
        expires_in: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// List the tokens within the caller's scope (never their secrets).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Show one token by accessor id.
    Show {
        /// Accessor id.
        accessor: String,
        #[command(flatten)]
        target: Target,
    },
    /// Revoke a token (every node stops accepting it within seconds).
    Revoke {
        /// Accessor id.
        accessor: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Where the trough router is.
#[derive(Debug, Args, Clone)]
pub struct Target {
    /// Base URL of a trough router.
    #[arg(long, env = "TROUGH_URL", default_value = "http://127.0.0.1:6444")]
    url: String,
    /// Token secret to send (`Authorization: Bearer`), when the server has authorization on.
    #[arg(long, env = "TROUGH_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// A node role on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RoleArg {
    /// Serve reads from verified local copies (includes local sync).
    Reader,
    /// Hold writable segments.
    Writer,
    /// Compete for synchronizer leadership.
    SyncServer,
}

fn roles(list: &[RoleArg]) -> serve::Roles {
    serve::Roles {
        reader: list.contains(&RoleArg::Reader),
        writer: list.contains(&RoleArg::Writer),
        sync_server: list.contains(&RoleArg::SyncServer),
    }
}

const NO_ROLES: serve::Roles = serve::Roles {
    reader: false,
    writer: false,
    sync_server: false,
};

#[derive(Debug, Subcommand)]
enum SegmentCommand {
    /// Publish a SQLite file as the next version of segment ID, or with --dir every SQLite file
    /// of a directory (each as segment <file name without extension>; files already published
    /// unchanged are skipped, so an interrupted load is finished by running it again). Shows a
    /// progress bar.
    Upload {
        /// Segment id ([A-Za-z0-9_][A-Za-z0-9._-]{0,127}).
        #[arg(required_unless_present = "dir")]
        id: Option<String>,
        /// The SQLite database file to publish.
        #[arg(required_unless_present = "dir")]
        file: Option<PathBuf>,
        /// Publish every *.sqlite, *.sqlite3 and *.db file of this directory instead.
        #[arg(long, conflicts_with_all = ["id", "file"])]
        dir: Option<PathBuf>,
        /// Files uploaded at a time (with --dir).
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[command(flatten)]
        target: Target,
    },
    /// List every segment with its latest version (following the pages of `GET /segments`).
    Ls {
        /// Only segments whose id starts with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Segments per request.
        #[arg(long, default_value_t = 1000)]
        page_size: usize,
        #[command(flatten)]
        target: Target,
    },
    /// Show one segment: versions, sizes, checksums, writer and replicas.
    Show {
        /// Segment id.
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Snapshot a writable segment into a new stored version.
    Promote {
        /// Segment id.
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Show a segment's structure: tables, columns, primary keys, indexes, row counts.
    Describe {
        /// Segment id.
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Set a segment's labels (KEY=VALUE), remove some (--remove KEY), set its description.
    Label {
        /// Segment id.
        id: String,
        /// Labels to set, as KEY=VALUE.
        #[arg(value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Labels to remove.
        #[arg(long, value_name = "KEY")]
        remove: Vec<String>,
        /// The description (an empty string clears it).
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Make an older version current again (for a writable segment, its live database too).
    Restore {
        /// Segment id.
        id: String,
        /// The version to restore.
        version: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a segment: its catalog entry, every node's copy and, after the garbage
    /// collector's grace period, its stored objects.
    Delete {
        /// Segment id.
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Make a segment writable, from a registered schema or inline schema SQL.
    Provision {
        /// Segment id.
        id: String,
        /// Name of a registered schema.
        #[arg(long, conflicts_with = "schema_sql")]
        schema: Option<String>,
        /// Inline schema SQL.
        #[arg(long)]
        schema_sql: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Register (or replace) a schema from a SQL file.
    Put {
        /// Schema name.
        name: String,
        /// File holding the schema SQL.
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// List registered schemas.
    Ls {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Args)]
#[command(
    about = "Run a read-only SQL query against one segment, or over many with --all / --segments",
    after_help = "Examples:\n  trough query pages-2024 'SELECT count(*) FROM pages'\n  trough query --all 'SELECT status, count(*) FROM pages GROUP BY status'\n  trough query --segments 'pages-*' 'SELECT url FROM pages ORDER BY size DESC LIMIT 10'"
)]
struct QueryArgs {
    /// Segment id, then the SQL; with --all or --segments, only the SQL.
    #[arg(num_args = 1..=2, value_names = ["ID", "SQL"], required = true)]
    args: Vec<String>,
    /// Query every segment (cluster-wide query with exact merging).
    #[arg(long, conflicts_with = "segments")]
    all: bool,
    /// Query the segments matching PATTERN: `prefix*`, an id, or `regex:EXPR`.
    #[arg(long, value_name = "PATTERN")]
    segments: Option<String>,
    /// Query the segments provisioned or published from this schema (with --segments: those
    /// of them that match).
    #[arg(long, value_name = "NAME")]
    schema: Option<String>,
    /// Query the segments with this label (KEY:VALUE; repeat for several, all must match).
    #[arg(long = "label", value_name = "KEY:VALUE")]
    labels: Vec<String>,
    /// With --all/--segments: answer with the segments that answered even if some failed.
    #[arg(long)]
    allow_partial: bool,
    /// Print one JSON object per line instead of one JSON array.
    #[arg(long)]
    ndjson: bool,
    #[command(flatten)]
    target: Target,
}

impl Command {
    /// The target of a client command.
    fn target(&self) -> Option<&Target> {
        match self {
            Command::Segment(
                SegmentCommand::Upload { target, .. }
                | SegmentCommand::Ls { target, .. }
                | SegmentCommand::Show { target, .. }
                | SegmentCommand::Promote { target, .. }
                | SegmentCommand::Provision { target, .. }
                | SegmentCommand::Describe { target, .. }
                | SegmentCommand::Label { target, .. }
                | SegmentCommand::Restore { target, .. }
                | SegmentCommand::Delete { target, .. },
            )
            | Command::Schema(SchemaCommand::Put { target, .. } | SchemaCommand::Ls { target })
            | Command::Token(
                TokenCommand::Create { target, .. }
                | TokenCommand::List { target }
                | TokenCommand::Show { target, .. }
                | TokenCommand::Revoke { target, .. },
            ) => Some(target),
            Command::Query(q) => Some(&q.target),
            _ => None,
        }
    }
}

/// The JSON of a `RIGHT:PATTERN` grant.
fn grant_json(g: &str) -> anyhow::Result<serde_json::Value> {
    let (right, pattern) = g
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("a grant is RIGHT:PATTERN, e.g. read:pages-*"))?;
    Ok(serde_json::json!({ "segments": pattern, "right": right }))
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(t) = cli.command.target() {
        client::set_token(t.token.clone());
    }
    match cli.command {
        Command::Serve(args) => serve::run(args, serve::Roles::ALL).await,
        Command::Node { roles: r, args } => serve::run(args, roles(&r)).await,
        Command::Reader(args)
        | Command::Sync {
            server: false,
            args,
        } => serve::run(args, roles(&[RoleArg::Reader])).await,
        Command::Writer(args) => serve::run(args, roles(&[RoleArg::Writer])).await,
        Command::Sync { server: true, args } => {
            serve::run(args, roles(&[RoleArg::SyncServer])).await
        }
        Command::Router(args) => serve::run(args, NO_ROLES).await,
        Command::Segment(cmd) => match cmd {
            SegmentCommand::Upload {
                id,
                file,
                dir,
                concurrency,
                target,
            } => match (dir, id, file) {
                (Some(dir), _, _) => bulk::upload_dir(&target.url, &dir, concurrency).await,
                (None, Some(id), Some(file)) => client::upload(&target.url, &id, &file).await,
                _ => anyhow::bail!("give a segment id and a file, or --dir DIR"),
            },
            SegmentCommand::Ls {
                prefix,
                page_size,
                target,
            } => {
                client::get_all_pages(
                    &target.url,
                    "/segments",
                    "segments",
                    prefix.as_deref(),
                    page_size,
                )
                .await
            }
            SegmentCommand::Show { id, target } => {
                client::get_json(&target.url, &format!("/segments/{id}")).await
            }
            SegmentCommand::Promote { id, target } => {
                client::post(&target.url, &format!("/segments/{id}/promote"), None).await
            }
            SegmentCommand::Describe { id, target } => {
                client::get_json(&target.url, &format!("/segments/{id}/schema")).await
            }
            SegmentCommand::Label {
                id,
                labels,
                remove,
                description,
                target,
            } => {
                let body = label_patch(&labels, &remove, description)?;
                client::patch_json(&target.url, &format!("/segments/{id}"), body).await
            }
            SegmentCommand::Restore {
                id,
                version,
                target,
            } => {
                client::post(
                    &target.url,
                    &format!("/segments/{id}/restore"),
                    Some(client::Payload::Json(
                        serde_json::json!({ "version": version }),
                    )),
                )
                .await
            }
            SegmentCommand::Delete { id, target } => {
                client::delete(&target.url, &format!("/segments/{id}")).await
            }
            SegmentCommand::Provision {
                id,
                schema,
                schema_sql,
                target,
            } => {
                let body = serde_json::json!({ "schema": schema, "schema_sql": schema_sql });
                client::post(
                    &target.url,
                    &format!("/segments/{id}/provision"),
                    Some(client::Payload::Json(body)),
                )
                .await
            }
        },
        Command::Schema(cmd) => match cmd {
            SchemaCommand::Put { name, file, target } => {
                let sql = std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
                client::put_text(&target.url, &format!("/schemas/{name}"), sql).await
            }
            SchemaCommand::Ls { target } => client::get_json(&target.url, "/schemas").await,
        },
        Command::Token(cmd) => match cmd {
            TokenCommand::Create {
                description,
                grants,
                cluster,
                expires_in,
                target,
            } => {
                let grants = grants
                    .iter()
                    .map(|g| grant_json(g))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let mut body = serde_json::json!({
                    "description": description,
                    "grants": grants,
                    "cluster": cluster,
                });
                if let Some(s) = expires_in {
                    body["expires_in_secs"] = s.into();
                }
                client::post(&target.url, "/tokens", Some(client::Payload::Json(body))).await
            }
            TokenCommand::List { target } => client::get_json(&target.url, "/tokens").await,
            TokenCommand::Show { accessor, target } => {
                client::get_json(&target.url, &format!("/tokens/{accessor}")).await
            }
            TokenCommand::Revoke { accessor, target } => {
                client::delete(&target.url, &format!("/tokens/{accessor}")).await
            }
        },
        Command::Query(q) => {
            let many = q.all || q.segments.is_some() || q.schema.is_some() || !q.labels.is_empty();
            match (many, q.args.as_slice()) {
                (false, [id, sql]) => client::query(&q.target.url, id, sql, q.ndjson).await,
                (true, [sql]) => {
                    let selector = match &q.segments {
                        None => serde_json::json!("*"),
                        Some(p) => match p.strip_prefix("regex:") {
                            Some(re) => serde_json::json!({ "regex": re }),
                            None => serde_json::json!(p),
                        },
                    };
                    let mut body = serde_json::json!({
                        "sql": sql,
                        "segments": selector,
                        "partial": if q.allow_partial { "allow" } else { "deny" },
                    });
                    if let Some(s) = &q.schema {
                        body["schema"] = serde_json::json!(s);
                    }
                    if !q.labels.is_empty() {
                        body["labels"] = serde_json::json!(label_map(&q.labels, ':')?);
                    }
                    client::query_many(&q.target.url, body, q.ndjson).await
                }
                (false, _) => anyhow::bail!("give a segment id and the SQL (or --all SQL)"),
                (true, _) => anyhow::bail!("with --all or --segments, give only the SQL"),
            }
        }
    }
}

/// `KEY<sep>VALUE` arguments as a map.
fn label_map(
    args: &[String],
    sep: char,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    args.iter()
        .map(|a| match a.split_once(sep) {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => anyhow::bail!("{a:?}: expected KEY{sep}VALUE"),
        })
        .collect()
}

/// The JSON merge patch of `trough segment label`.
fn label_patch(
    set: &[String],
    remove: &[String],
    description: Option<String>,
) -> anyhow::Result<serde_json::Value> {
    let mut labels = serde_json::Map::new();
    for (k, v) in label_map(set, '=')? {
        labels.insert(k, serde_json::Value::String(v));
    }
    for k in remove {
        labels.insert(k.clone(), serde_json::Value::Null);
    }
    let mut body = serde_json::json!({ "labels": labels });
    if let Some(d) = description {
        body["description"] = if d.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::String(d)
        };
    }
    Ok(body)
}
