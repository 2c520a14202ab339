//! The `add` worker as its own process: `add --agent 127.0.0.1:7701`.

fn main() -> anyhow::Result<()> {
    damrey_example::process::run("add", || damrey_example::Add)
}
