fn main() -> std::process::ExitCode {
    errand::cli::main()
}
