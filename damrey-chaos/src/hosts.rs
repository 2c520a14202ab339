//! Where the agents run: each on its own host — a network namespace joined to the
//! others by a bridge — when running as root with `ip netns`, else all on loopback.
//!
//! Netns mode builds, per run, a switch namespace holding a bridge, one namespace per
//! host with a veth into the bridge, and a veth from the root namespace (where the
//! checker and the proxy run) into the bridge. The bridge lives in its own namespace
//! so the root namespace's firewall (Docker sets `FORWARD DROP`) never sees the
//! hosts' traffic, and nothing global is changed. A link cut drops, with iptables in
//! the two hosts' own namespaces, the packets each receives from the other, so the
//! checker's path through the root namespace is never cut. Everything is removed on
//! drop, and namespaces a killed run left behind are removed by the next run.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// The prefix of every namespace and root-side interface of ours.
const PREFIX: &str = "dch";

/// Which kind of hosts a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Network namespaces, one per host.
    Netns,
    /// Every agent on 127.0.0.1 with its own port.
    Loopback,
}

/// The hosts of one run.
pub struct Hosts {
    /// The mode.
    pub mode: Mode,
    /// Namespace names (netns mode): the switch, then one per host.
    switch: Option<String>,
    namespaces: Vec<String>,
    /// The address of the root namespace on the bridge (the proxy's), or 127.0.0.1.
    pub root_ip: String,
    /// Each host's address.
    pub ips: Vec<String>,
}

fn run(args: &[&str]) -> Result<(), String> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn output(args: &[&str]) -> String {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default()
}

/// Whether netns mode can run here: root, and `ip netns` works.
pub fn netns_available() -> bool {
    let root = output(&["id", "-u"]).trim() == "0";
    root && Command::new("ip")
        .args(["netns", "list"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
        && Command::new("iptables")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
}

/// Removes namespaces of runs whose process is gone (killed before it could clean up).
fn remove_leftovers() {
    for line in output(&["ip", "netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty() && !crate::procs::alive(&pid) {
            // Its agents and workers outlived it: a namespace is only gone with them.
            for orphan in output(&["ip", "netns", "pids", name]).split_whitespace() {
                let _ = run(&["kill", "-KILL", orphan]);
            }
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
}

static RUNS: AtomicU64 = AtomicU64::new(0);

impl Hosts {
    /// `count` hosts on loopback.
    pub fn loopback(count: usize) -> Hosts {
        Hosts {
            mode: Mode::Loopback,
            switch: None,
            namespaces: Vec::new(),
            root_ip: "127.0.0.1".to_owned(),
            ips: vec!["127.0.0.1".to_owned(); count],
        }
    }

    /// `count` hosts in network namespaces, names and subnet unique to this run.
    ///
    /// # Errors
    /// A command failed; whatever was built is removed.
    pub fn netns(count: usize) -> Result<Hosts, String> {
        remove_leftovers();
        let run_number = RUNS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{PREFIX}{pid}x{run_number}");
        let subnet = free_subnet(pid as u64 * 131 + run_number)?;
        let mut hosts = Hosts {
            mode: Mode::Netns,
            switch: Some(format!("{tag}sw")),
            namespaces: Vec::new(),
            root_ip: format!("{subnet}.1"),
            ips: (0..count).map(|i| format!("{subnet}.{}", 10 + i)).collect(),
        };
        // Built step by step so that a failure leaves `hosts` knowing what to remove.
        let switch = hosts.switch.clone().expect("set above");
        run(&["ip", "netns", "add", &switch])?;
        run(&["ip", "-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &switch, "link", "set", "br0", "up"])?;
        // The root side's name must be unique on the machine and at most 15 bytes.
        let root_if = format!("dch{}", (pid as u64 * 64 + run_number) % 1_000_000_000);
        run(&[
            "ip", "link", "add", &root_if, "type", "veth", "peer", "name", "root", "netns", &switch,
        ])?;
        run(&[
            "ip", "-n", &switch, "link", "set", "root", "master", "br0", "up",
        ])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", hosts.root_ip),
            "dev",
            &root_if,
        ])?;
        run(&["ip", "link", "set", &root_if, "up"])?;
        for i in 0..count {
            let namespace = format!("{tag}h{i}");
            run(&["ip", "netns", "add", &namespace])?;
            hosts.namespaces.push(namespace.clone());
            let port = format!("h{i}");
            run(&[
                "ip", "-n", &namespace, "link", "add", "eth0", "type", "veth", "peer", "name",
                &port, "netns", &switch,
            ])?;
            run(&[
                "ip", "-n", &switch, "link", "set", &port, "master", "br0", "up",
            ])?;
            run(&[
                "ip",
                "-n",
                &namespace,
                "addr",
                "add",
                &format!("{}/24", hosts.ips[i]),
                "dev",
                "eth0",
            ])?;
            run(&["ip", "-n", &namespace, "link", "set", "eth0", "up"])?;
            run(&["ip", "-n", &namespace, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }

    /// The command that runs `program` on host `host`.
    pub fn command(&self, host: Option<usize>, program: &std::path::Path) -> Command {
        match host.and_then(|host| self.namespaces.get(host)) {
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    /// Cuts (or heals) the link between hosts `a` and `b`; a no-op on loopback.
    pub fn cut(&self, a: usize, b: usize, cut: bool) {
        if self.mode != Mode::Netns {
            return;
        }
        for (here, there) in [(a, b), (b, a)] {
            let action = if cut { "-I" } else { "-D" };
            let result = run(&[
                "ip",
                "netns",
                "exec",
                &self.namespaces[here],
                "iptables",
                action,
                "INPUT",
                "-s",
                &self.ips[there],
                "-j",
                "DROP",
            ]);
            if let Err(error) = result {
                tracing::warn!(%error, "link fault");
            }
        }
    }
}

/// A `10.x.y` prefix no interface on this machine uses.
fn free_subnet(start: u64) -> Result<String, String> {
    let used = output(&["ip", "-4", "addr"]);
    for attempt in 0..1_000u64 {
        let n = start.wrapping_add(attempt * 7_919) % (50 * 250);
        let subnet = format!("10.{}.{}", 200 + n / 250, n % 250);
        if !used.contains(&format!("{subnet}.")) {
            return Ok(subnet);
        }
    }
    Err("no free 10.x.y.0/24 subnet".to_owned())
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veths in it, and with them their peers.
        for namespace in self.namespaces.iter().chain(self.switch.iter()) {
            let _ = run(&["ip", "netns", "del", namespace]);
        }
    }
}
