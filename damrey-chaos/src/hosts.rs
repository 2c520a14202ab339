//! Where the agents run: each on its own host — a network namespace joined to the
//! others by a bridge — when running as root with `ip netns`, else all on loopback;
//! or, on request, each host a container on a Docker network of the run's own.
//!
//! Netns mode builds, per run, a switch namespace holding a bridge, one namespace per
//! host with a veth into the bridge, and a veth from the root namespace (where the
//! checker and the proxy run) into the bridge. The bridge lives in its own namespace
//! so the root namespace's firewall (Docker sets `FORWARD DROP`) never sees the
//! hosts' traffic, and nothing global is changed. A link cut drops, with iptables in
//! the two hosts' own namespaces, the packets each receives from the other, so the
//! checker's path through the root namespace is never cut. Everything is removed on
//! drop, and namespaces a killed run left behind are removed by the next run.
//!
//! Container mode makes, per run, a user-defined Docker network and one *pod*
//! container per host (`sleep infinity`, holding the host's address, like a
//! Kubernetes pod's sandbox); the agent and each worker instance are containers of
//! their own that join their pod's network namespace, with the binaries and the run's
//! directory mounted at the same paths as on the machine. So a kill is `docker kill`,
//! a freeze `docker pause`, an isolated host `docker network disconnect`; pairwise
//! link cuts drop packets with the machine's iptables inside the pod's namespace
//! (`nsenter`), so the image needs nothing but a libc. The checker and the proxy stay
//! on the machine, on the network's gateway address. Everything carries the checker's
//! pid in a label, and the next run removes what a killed run left.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::procs::HostCommand;

/// The prefix of every namespace and root-side interface of ours.
const PREFIX: &str = "dch";

/// Which kind of hosts a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Network namespaces, one per host.
    Netns,
    /// Every agent on 127.0.0.1 with its own port.
    Loopback,
    /// Docker containers, one pod per host on a network of the run's own.
    Containers,
}

/// The hosts a run asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// Network namespaces where they can be made (root, `ip netns`), else loopback.
    Best,
    /// Loopback, even where namespaces could be made.
    Loopback,
    /// Containers from this image.
    Containers(String),
}

/// The image container mode runs by default: the one `scripts/offline-images` makes
/// without a registry (or Docker Hub's, with one); it needs only a libc matching the
/// machine's, as the binaries are the machine's own.
pub const DEFAULT_IMAGE: &str = "debian:bookworm-slim";

/// The label that names the checker's pid on every container and network of ours.
const OWNER_LABEL: &str = "damrey-chaos.owner";

/// The label that names the run (its network) on every container of the run.
const RUN_LABEL: &str = "damrey-chaos.run";

/// Container mode's setting: the network, the pods and what every container mounts.
struct Docker {
    network: String,
    image: String,
    /// The pods' names, one per host.
    pods: Vec<String>,
    /// Each pod's network namespace, as seen from the machine.
    netns: Vec<String>,
    /// Paths mounted at the same place in every container (read-only when `true`).
    mounts: Vec<(PathBuf, bool)>,
    /// Containers started so far (for unique names).
    started: AtomicU64,
}

/// The hosts of one run.
pub struct Hosts {
    /// The mode.
    pub mode: Mode,
    /// Namespace names (netns mode): the switch, then one per host.
    switch: Option<String>,
    namespaces: Vec<String>,
    /// Container mode's network and pods.
    docker: Option<Docker>,
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
            docker: None,
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
            docker: None,
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

    /// `count` hosts, each a pod container from `image` on a Docker network made for
    /// this run; `mounts` (the binaries, read-only, and the run's directory) appear at
    /// the same paths inside. The checker must run as root in the Docker host's pid
    /// namespace: link cuts enter the pods' network namespaces through `/proc`.
    ///
    /// # Errors
    /// Docker is not usable, the image is missing or cannot run the first mounted
    /// binary, link cuts cannot be made, or a command failed; whatever was built is
    /// removed.
    pub fn containers(
        count: usize,
        image: &str,
        mounts: Vec<(PathBuf, bool)>,
    ) -> Result<Hosts, String> {
        remove_docker_leftovers();
        run(&["docker", "image", "inspect", image]).map_err(|_| {
            format!("no image {image}: make it with scripts/offline-images (docs/chaos.md)")
        })?;
        let run_number = RUNS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{PREFIX}{pid}x{run_number}");
        let subnet = free_subnet(pid as u64 * 131 + run_number)?;
        let owner = format!("{OWNER_LABEL}={}", owner());
        let mut hosts = Hosts {
            mode: Mode::Containers,
            switch: None,
            namespaces: Vec::new(),
            docker: Some(Docker {
                network: tag.clone(),
                image: image.to_owned(),
                pods: Vec::new(),
                netns: Vec::new(),
                mounts,
                started: AtomicU64::new(0),
            }),
            root_ip: format!("{subnet}.1"),
            ips: (0..count).map(|i| format!("{subnet}.{}", 10 + i)).collect(),
        };
        // Built step by step so that a failure leaves `hosts` knowing what to remove.
        run(&[
            "docker",
            "network",
            "create",
            "--label",
            &owner,
            "--subnet",
            &format!("{subnet}.0/24"),
            "--gateway",
            &format!("{subnet}.1"),
            &tag,
        ])?;
        for i in 0..count {
            let pod = format!("{tag}h{i}");
            let docker = hosts.docker.as_mut().expect("set above");
            docker.pods.push(pod.clone());
            run(&[
                "docker",
                "run",
                "--detach",
                "--label",
                &owner,
                "--label",
                &format!("{RUN_LABEL}={tag}"),
                "--name",
                &pod,
                "--hostname",
                &format!("h{i}"),
                "--network",
                &tag,
                "--ip",
                &hosts.ips[i],
                image,
                "sleep",
                "infinity",
            ])?;
            let pid = output(&["docker", "inspect", "--format", "{{.State.Pid}}", &pod]);
            let pid = pid.trim();
            if pid.is_empty() || pid == "0" {
                return Err(format!("pod {pod} has no process"));
            }
            docker.netns.push(format!("/proc/{pid}/ns/net"));
        }
        // Fail now rather than inject faults that do nothing.
        hosts.in_namespace(0, &["iptables", "-S"]).map_err(|error| {
            format!(
                "link cuts need root in the Docker host's pid namespace (nsenter, iptables): {error}"
            )
        })?;
        if let Some((binary, _)) = hosts.docker.as_ref().and_then(|d| d.mounts.first()) {
            let mut probe = hosts.command(Some(0), binary, Path::new("/"));
            let status = probe.command.arg("--help").stdout(Stdio::null()).output();
            match status {
                Ok(output) if output.status.success() => {}
                Ok(output) => {
                    return Err(format!(
                        "{} does not run in {image}: {}",
                        binary.display(),
                        String::from_utf8_lossy(&output.stderr).trim()
                    ));
                }
                Err(error) => return Err(format!("docker run: {error}")),
            }
        }
        Ok(hosts)
    }

    /// The command that runs `program` on host `host` (here, without one), working in
    /// `workdir`.
    pub fn command(&self, host: Option<usize>, program: &Path, workdir: &Path) -> HostCommand {
        let local = || {
            let mut local = HostCommand::local(program);
            local.command.current_dir(workdir);
            local
        };
        let Some(host) = host else {
            return local();
        };
        if let Some(namespace) = self.namespaces.get(host) {
            let mut command = Command::new("ip");
            command
                .args(["netns", "exec", namespace])
                .arg(program)
                .current_dir(workdir);
            return HostCommand {
                command,
                container: None,
            };
        }
        let Some(docker) = &self.docker else {
            return local();
        };
        let pod = &docker.pods[host];
        let container = format!("{pod}p{}", docker.started.fetch_add(1, Ordering::Relaxed));
        let mut command = Command::new("docker");
        command
            .args(["run", "--rm", "--name", &container, "--label"])
            .arg(format!("{OWNER_LABEL}={}", owner()))
            .arg(format!("--label={RUN_LABEL}={}", docker.network))
            .arg(format!("--network=container:{pod}"))
            // RUST_LOG as the checker gives it to the docker client.
            .args(["--env", "RUST_LOG", "--workdir"])
            .arg(workdir);
        for (path, read_only) in &docker.mounts {
            let path = path.display();
            command.arg(format!(
                "--volume={path}:{path}{}",
                if *read_only { ":ro" } else { "" }
            ));
        }
        command.arg(&docker.image).arg(program);
        HostCommand {
            command,
            container: Some(container),
        }
    }

    /// The address a process on host `host` reaches an agent on the same host at, for
    /// an agent reached from elsewhere at `address` and listening on `port`: in
    /// container mode the pod's loopback, which an isolated host keeps.
    pub fn local_address(&self, address: &str, port: u16) -> String {
        match self.mode {
            Mode::Containers => format!("127.0.0.1:{port}"),
            Mode::Netns | Mode::Loopback => address.to_owned(),
        }
    }

    /// The address an agent on a host binds to, given its host's address.
    pub fn bind_ip<'a>(&self, ip: &'a str) -> &'a str {
        match self.mode {
            // Its address goes away while the host is disconnected.
            Mode::Containers => "0.0.0.0",
            Mode::Netns | Mode::Loopback => ip,
        }
    }

    /// A machine's program run inside host `host`'s network namespace.
    fn in_namespace(&self, host: usize, args: &[&str]) -> Result<(), String> {
        match (self.namespaces.get(host), &self.docker) {
            (Some(namespace), _) => {
                run(&[&["ip", "netns", "exec", namespace.as_str()], args].concat())
            }
            (None, Some(docker)) => {
                let netns = format!("--net={}", docker.netns[host]);
                run(&[&["nsenter", netns.as_str()], args].concat())
            }
            (None, None) => Ok(()),
        }
    }

    /// Cuts (or heals) the link between hosts `a` and `b`; a no-op on loopback. Each
    /// side's rule is put (or taken) only when absent (or present), so a call that
    /// failed halfway can be made again.
    ///
    /// # Errors
    /// A side's rule could not be inserted (or deleted); the other side's still was.
    pub fn cut(&self, a: usize, b: usize, cut: bool) -> Result<(), String> {
        let mut result = Ok(());
        for (here, there) in [(a, b), (b, a)] {
            let rule = |action| {
                [
                    "iptables",
                    action,
                    "INPUT",
                    "-s",
                    &self.ips[there],
                    "-j",
                    "DROP",
                ]
            };
            let present = self.in_namespace(here, &rule("-C")).is_ok();
            if present != cut {
                let action = if cut { "-I" } else { "-D" };
                result = result.and(self.in_namespace(here, &rule(action)));
            }
        }
        result
    }

    /// Takes host `host` off the network (or puts it back): every peer, the proxy and
    /// the checker lose it, while its own processes still reach each other. In
    /// container mode `docker network disconnect` (and `connect` with the same
    /// address); in netns mode its link goes down; a no-op on loopback.
    ///
    /// # Errors
    /// The command failed.
    pub fn isolate(&self, host: usize, isolate: bool) -> Result<(), String> {
        match (&self.docker, self.namespaces.get(host)) {
            // Made again after a failure: done already.
            (Some(docker), _) if docker.connected(host) != isolate => Ok(()),
            (Some(docker), _) if isolate => run(&[
                "docker",
                "network",
                "disconnect",
                &docker.network,
                &docker.pods[host],
            ]),
            (Some(docker), _) => run(&[
                "docker",
                "network",
                "connect",
                "--ip",
                &self.ips[host],
                &docker.network,
                &docker.pods[host],
            ]),
            (None, Some(namespace)) => run(&[
                "ip",
                "-n",
                namespace,
                "link",
                "set",
                "eth0",
                if isolate { "down" } else { "up" },
            ]),
            (None, None) => Ok(()),
        }
    }
}

impl Docker {
    /// Whether pod `host` is on the run's network.
    fn connected(&self, host: usize) -> bool {
        let networks = output(&[
            "docker",
            "inspect",
            "--format",
            "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
            &self.pods[host],
        ]);
        networks.split_whitespace().any(|name| name == self.network)
    }
}

/// What the label names a container or network of ours by: the checker's pid and its
/// pid namespace, so that a checker never takes another namespace's live pid for a
/// dead one of its own.
fn owner() -> String {
    let namespace = std::fs::read_link("/proc/self/ns/pid")
        .map(|link| link.display().to_string())
        .unwrap_or_default();
    let namespace: String = namespace.chars().filter(char::is_ascii_digit).collect();
    format!("{namespace}:{}", std::process::id())
}

/// Removes the containers and networks of runs whose checker (in this pid namespace)
/// is gone.
fn remove_docker_leftovers() {
    let ours = owner();
    let (namespace, _) = ours.split_once(':').expect("owner() has a colon");
    let dead = |listing: String| -> Vec<String> {
        listing
            .lines()
            .filter_map(|line| {
                let (id, owner) = line.split_once(' ')?;
                let (their_namespace, pid) = owner.trim().split_once(':')?;
                (their_namespace == namespace && !crate::procs::alive(pid)).then(|| id.to_owned())
            })
            .collect()
    };
    let filter = format!("label={OWNER_LABEL}");
    let format = format!("{{{{.ID}}}} {{{{.Label \"{OWNER_LABEL}\"}}}}");
    let containers = dead(output(&[
        "docker", "ps", "--all", "--filter", &filter, "--format", &format,
    ]));
    if !containers.is_empty() {
        let mut remove = vec!["docker", "rm", "--force"];
        remove.extend(containers.iter().map(String::as_str));
        let _ = run(&remove);
    }
    let networks = dead(output(&[
        "docker", "network", "ls", "--filter", &filter, "--format", &format,
    ]));
    for network in networks {
        let _ = run(&["docker", "network", "rm", &network]);
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
        if let Some(docker) = &self.docker {
            // Every container of the run (processes left running hold the pods'
            // namespaces), then the network.
            let filter = format!("label={RUN_LABEL}={}", docker.network);
            let ids = output(&["docker", "ps", "--all", "--quiet", "--filter", &filter]);
            let mut remove = vec!["docker", "rm", "--force"];
            remove.extend(ids.split_whitespace());
            if remove.len() > 3 {
                let _ = run(&remove);
            }
            let _ = run(&["docker", "network", "rm", &docker.network]);
        }
        // Deleting a namespace deletes the veths in it, and with them their peers.
        for namespace in self.namespaces.iter().chain(self.switch.iter()) {
            let _ = run(&["ip", "netns", "del", namespace]);
        }
    }
}
