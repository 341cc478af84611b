//! `sirend`, the sirennet monitoring daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sirend::config::Loaded;

#[derive(Debug, Parser)]
#[command(name = "sirend", version, about = "Monitoring daemon for outdoor warning sirens")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a configuration with its fleet and key files, and summarise it.
    CheckConfig {
        /// The configuration file (sirend.toml).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match Loaded::load(&file) {
            Ok(loaded) => {
                print!("{}", loaded.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}
