//! The CI set of the seeded fault checker: a fixed list of seeds, each run against the
//! binaries built from this tree (by the support, before the first seed), every
//! violation printed with the command that replays it; two of them again with every
//! host a set of containers; and the proof that each mode's host faults are real.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use damrey_chaos::hosts::{self, Hosts, Wanted};
use damrey_chaos::mesh::Binaries;
use damrey_chaos::procs::Process;
use damrey_chaos::run::{Options, run_seed};
use damrey_mesh_tests::binaries::binary;
use damrey_mesh_tests::process::TempDir;
use damrey_mesh_tests::wait::{self, PATIENCE};
use damrey_testcontainers::docker_or_skip;

/// Fixed, so that CI always tries the same topologies and schedules; chosen (with
/// `damrey-chaos --dry-run`) so that together they kill, stop and freeze workers,
/// agents and the proxy, cut links, isolate hosts, and redirect, end, re-`mpu`, add
/// and delete.
const SEEDS: &[u64] = &[2, 7, 10, 12, 16, 18, 42, 48, 53, 58];

/// Run again with every host a set of containers: between them they pause (`SIGSTOP`)
/// and stop (`SIGTERM`) an agent, kill and stop workers, cut a link, disconnect a host
/// from the network and fail an instance.
const CONTAINER_SEEDS: &[u64] = &[7, 42];

fn binaries() -> Binaries {
    Binaries {
        proxy: binary("damrey-proxy"),
        agent: binary("damrey-agent"),
        worker: binary("chaos-worker"),
    }
}

/// Runs `seeds` on `hosts`, printing each report; asserts that none broke a guarantee.
async fn run_seeds(seeds: &[u64], hosts: Wanted) {
    let binaries = binaries();
    let started = Instant::now();
    let mut failed = Vec::new();
    for seed in seeds {
        let options = Options {
            seed: *seed,
            duration: damrey_chaos::DEFAULT_DURATION,
            faults: None,
            hosts: hosts.clone(),
            binaries: binaries.clone(),
            keep: false,
        };
        let report = run_seed(&options)
            .await
            .unwrap_or_else(|error| panic!("seed {seed}: setup failed: {error}"));
        print!("{}", report.render(options.duration));
        if !report.violations.is_empty() {
            failed.push(*seed);
        }
    }
    println!(
        "{} seeds in {:.0}s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failed.is_empty(),
        "seeds {failed:?} broke a guarantee (see above; each prints its replay command); \
         shrink one with `target/debug/damrey-chaos --seed N`"
    );
}

#[actix_rt::test]
async fn the_ci_seeds_keep_every_guarantee() {
    run_seeds(SEEDS, Wanted::Best).await;
}

#[actix_rt::test]
async fn two_seeds_keep_every_guarantee_on_containers() {
    if !docker_or_skip("two_seeds_keep_every_guarantee_on_containers") {
        return;
    }
    run_seeds(
        CONTAINER_SEEDS,
        Wanted::Containers(hosts::DEFAULT_IMAGE.to_owned()),
    )
    .await;
}

/// Whether `GET /healthz` at `address` is answered within half a second.
fn answers(address: &str) -> bool {
    let Ok(address) = address.parse() else {
        return false;
    };
    let timeout = Duration::from_millis(500);
    let Ok(mut stream) = TcpStream::connect_timeout(&address, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let mut answer = [0u8; 12];
    stream.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && answer.starts_with(b"HTTP/1.")
}

/// Whether a process on host `host` opens a connection to `address` within a second.
fn reaches(hosts: &Hosts, host: usize, address: &str) -> bool {
    let (ip, port) = address.split_once(':').expect("ip:port");
    let mut command = hosts.command(Some(host), Path::new("/usr/bin/timeout"), Path::new("/"));
    command
        .command
        .args(["1", "bash", "-c", &format!("exec 3<>/dev/tcp/{ip}/{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
        .command
        .status()
        .is_ok_and(|status| status.success())
}

/// Waits for `check` to hold.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    wait::eventually(PATIENCE, what, || std::future::ready(check().then_some(()))).await;
}

/// The faults a mode's hosts inject do what they say: with an agent on host 0, a cut
/// between hosts 0 and 1 stops host 1 reaching it but not the checker; an isolated
/// host 0 is reached by nobody but itself; a frozen agent answers nothing; and each
/// heals.
async fn faults_do_what_they_say(hosts: Hosts, dir: &Path) {
    let agent_address = format!("{}:7701", hosts.ips[0]);
    let mut command = hosts.command(Some(0), &binary("damrey-agent"), dir);
    command
        .command
        .args(["-p", "7701", "--host", hosts.bind_ip(&hosts.ips[0])])
        .args(["-a", &agent_address])
        .args(["-pr", &format!("{}:9", hosts.root_ip)]);
    let mut agent = Process::spawn("damrey-agent", &mut command, &dir.join("agent.log"))
        .expect("the agent starts");
    let local = hosts.local_address(&agent_address, 7701);
    eventually("the checker reaches the agent", || answers(&agent_address)).await;
    assert!(reaches(&hosts, 1, &agent_address), "host 1 reaches host 0");

    hosts.cut(0, 1, true).expect("cut");
    assert!(
        !reaches(&hosts, 1, &agent_address),
        "a cut link carries nothing"
    );
    assert!(answers(&agent_address), "a cut spares the checker's path");
    hosts.cut(0, 1, false).expect("heal");
    assert!(
        reaches(&hosts, 1, &agent_address),
        "a healed link carries again"
    );

    hosts.isolate(0, true).expect("isolate");
    assert!(
        !answers(&agent_address),
        "the checker loses an isolated host"
    );
    assert!(
        !reaches(&hosts, 1, &agent_address),
        "so does every other host"
    );
    assert!(
        reaches(&hosts, 0, &local),
        "its own processes still reach its agent"
    );
    hosts.isolate(0, false).expect("put back");
    eventually("the checker reaches the host put back", || {
        answers(&agent_address)
    })
    .await;
    assert!(reaches(&hosts, 1, &agent_address), "and so does host 1");

    agent.signal("STOP");
    assert!(!answers(&agent_address), "a frozen agent answers nothing");
    agent.signal("CONT");
    eventually("the thawed agent answers", || answers(&agent_address)).await;
    agent.kill();
    assert!(!answers(&agent_address), "a killed agent answers nothing");
}

#[actix_rt::test]
async fn container_hosts_cut_isolate_and_freeze_for_real() {
    if !docker_or_skip("container_hosts_cut_isolate_and_freeze_for_real") {
        return;
    }
    if !hosts::netns_available() {
        println!("skipped: container hosts need root (link cuts enter their namespaces)");
        return;
    }
    let dir = TempDir::new();
    let mounts = vec![(binary("damrey-agent"), true), (dir.0.clone(), false)];
    let hosts = Hosts::containers(2, hosts::DEFAULT_IMAGE, mounts)
        .unwrap_or_else(|error| panic!("container hosts: {error}"));
    faults_do_what_they_say(hosts, &dir.0).await;
}

#[actix_rt::test]
async fn netns_hosts_cut_isolate_and_freeze_for_real() {
    if !hosts::netns_available() {
        println!("skipped: network namespaces need root, `ip netns` and iptables");
        return;
    }
    let dir = TempDir::new();
    let hosts = Hosts::netns(2).unwrap_or_else(|error| panic!("netns hosts: {error}"));
    faults_do_what_they_say(hosts, &dir.0).await;
}
