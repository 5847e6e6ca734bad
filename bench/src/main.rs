#![allow(clippy::expect_used, clippy::unwrap_used)] // a load generator: a broken setup stops it loudly
//! `sandcat-bench`: the same client workloads against any Matrix homeserver, so Sandcat and a
//! peer (Synapse) can be compared in one run. Each workload checks correctness while it
//! measures: a run that loses or fails requests is reported as failed, not as fast.

mod client;
mod report;
mod store;
mod workloads;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "sandcat-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run workloads against one homeserver and write a JSON result.
    Run(workloads::RunArgs),
    /// The write ceiling of the store alone: N concurrent writers on one PostgreSQL.
    Store(store::StoreArgs),
    /// Serve a bare axum "hello" endpoint: the loopback HTTP baseline.
    Hello {
        #[arg(long, default_value = "127.0.0.1:18100")]
        listen: std::net::SocketAddr,
    },
    /// Merge result files into a markdown table with ratios against the first target.
    Report {
        /// Result files (JSON), the reference target first.
        files: Vec<PathBuf>,
        /// Markdown file to write (printed to stdout too).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A line describing the machine.
        #[arg(long, default_value = "")]
        machine: String,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run(args) => workloads::run(args).await,
        Command::Store(args) => store::run(args).await,
        Command::Hello { listen } => {
            let app = axum::Router::new().route(
                "/_matrix/client/versions",
                axum::routing::get(|| async {
                    axum::Json(serde_json::json!({ "versions": ["v1.12"] }))
                }),
            );
            let listener = tokio::net::TcpListener::bind(listen).await?;
            axum::serve(listener, app).await?;
            Ok(())
        }
        Command::Report {
            files,
            out,
            machine,
        } => report::write(&files, out.as_deref(), &machine),
    }
}
