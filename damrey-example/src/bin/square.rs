//! The `square` worker as its own process: `square --agent 127.0.0.1:7701`.

fn main() -> anyhow::Result<()> {
    damrey_example::process::run("square", || damrey_example::Square)
}
