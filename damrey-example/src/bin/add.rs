//! The `add` worker as its own process: `add --agent 127.0.0.1:7701` (`add --help`).

fn main() -> std::process::ExitCode {
    damrey_actors::process::run("add", || damrey_example::Add)
}
