//! The `nap` worker as its own process: `nap --agent 127.0.0.1:7701` (`nap --help`).

fn main() -> std::process::ExitCode {
    damrey_actors::process::run("nap", || damrey_example::Nap)
}
