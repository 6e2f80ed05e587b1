//! The `mrgc-autoscaler` binary: everything is in the library; `cli` parses the command line
//! and calls into it.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
