//! The `entry` worker as its own process: `entry --agent 127.0.0.1:7701`.

fn main() -> anyhow::Result<()> {
    damrey_example::process::run("entry", || damrey_example::Entry)
}
