//! The `plumbline` binary: parse the command line and hand over to the CLI.

fn main() -> std::process::ExitCode {
    plumbline::cli::main()
}
