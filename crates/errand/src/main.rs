// mimalloc: the request path allocates a lot of small, short-lived objects; glibc's
// malloc spent ~15% of the server's CPU on them under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    errand::cli::main()
}
