fn main() -> std::process::ExitCode {
    crawld::cli::main()
}
