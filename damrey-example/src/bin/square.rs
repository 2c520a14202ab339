//! The `square` worker as its own process: `square --agent 127.0.0.1:7701` (`square --help`).

fn main() -> std::process::ExitCode {
    damrey_actors::process::run("square", || damrey_example::Square)
}
