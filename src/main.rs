//! `udht-node`: parses the command line and runs the node (or the `ctl` client).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    udht::cli::run(udht::cli::Cli::parse())
}
