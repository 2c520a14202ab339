//! The `nap` worker as its own process: `nap --agent 127.0.0.1:7701`.

fn main() -> anyhow::Result<()> {
    damrey_example::process::run("nap", || damrey_example::Nap)
}
