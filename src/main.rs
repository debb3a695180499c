//! The `trough` binary: parses the command line, loads configuration and calls into the crates.
//! No logic lives here beyond wiring; see docs/architecture.md for the tour.

// The CLI's doc comments are its `--help` text (clap), written for a terminal, not rustdoc:
// patterns like `[A-Za-z0-9]` and `<data-dir>` are meant literally.
#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]
mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Before anything opens a SQLite connection (decision 0014).
    trough_sqlite::alloc::install();
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
