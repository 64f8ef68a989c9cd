//! The `docpipe` binary: everything is in `docpipe::cli`.

fn main() -> std::process::ExitCode {
    docpipe::cli::main()
}
