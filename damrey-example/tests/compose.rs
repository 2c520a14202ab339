//! Checks `docker-compose.yml` and the `Dockerfile` without a container engine: every
//! service's command parses with its binary's real clap flags, the ports are DESIGN.md's,
//! the services point at each other by name, every started worker has a registered
//! config, and the image builds every binary the compose file runs.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Parser;
use damrey_example::process::{EntryArgs, WorkerArgs};
use serde::Deserialize;
use serde_yaml_ng::Value;

/// DESIGN.md §1's default ports.
const PROXY_PORT: u16 = 7700;
const AGENT_PORT: u16 = 7701;
const ENTRY_HTTP_PORT: u16 = 8080;
/// The ports of Postgres, MariaDB, Redis, RabbitMQ, Mosquitto and NATS, which none of
/// our services may use (DESIGN.md §1).
const RESERVED_PORTS: [u16; 6] = [5432, 3306, 6379, 5672, 1883, 4222];
/// The worker binaries; each attaches as its own name unless `--name` says otherwise.
const WORKER_BINARIES: [&str; 4] = ["entry", "add", "square", "nap"];
/// Every binary of ours whose flags this test knows.
const OUR_BINARIES: [&str; 6] = [
    "damrey-proxy",
    "damrey-agent",
    "entry",
    "add",
    "square",
    "nap",
];

// ---------------------------------------------------------------------------------------
// The compose file, as far as these checks read it.

#[derive(Debug, Deserialize)]
struct Compose {
    services: BTreeMap<String, Service>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Service {
    image: Option<String>,
    build: Option<Value>,
    command: Option<Words>,
    environment: Option<Environment>,
    ports: Vec<Value>,
    depends_on: Option<DependsOn>,
    healthcheck: Option<Healthcheck>,
    volumes: Vec<String>,
}

/// A command or healthcheck test: a string (split on whitespace) or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Words {
    Line(String),
    List(Vec<String>),
}

impl Words {
    fn to_vec(&self) -> Vec<String> {
        match self {
            Words::Line(line) => line.split_whitespace().map(str::to_owned).collect(),
            Words::List(list) => list.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Environment {
    Map(BTreeMap<String, Option<Value>>),
    List(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DependsOn {
    List(Vec<String>),
    Map(BTreeMap<String, Dependency>),
}

#[derive(Debug, Deserialize)]
struct Dependency {
    condition: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Healthcheck {
    test: Words,
}

impl Service {
    fn command(&self) -> Vec<String> {
        self.command.as_ref().map(Words::to_vec).unwrap_or_default()
    }

    fn program(&self) -> Option<String> {
        self.command().first().cloned()
    }

    fn env(&self) -> BTreeMap<String, String> {
        match &self.environment {
            None => BTreeMap::new(),
            Some(Environment::Map(map)) => map
                .iter()
                .map(|(key, value)| (key.clone(), value.as_ref().map(scalar).unwrap_or_default()))
                .collect(),
            Some(Environment::List(list)) => list
                .iter()
                .map(|item| match item.split_once('=') {
                    Some((key, value)) => (key.to_owned(), value.to_owned()),
                    None => (item.clone(), String::new()),
                })
                .collect(),
        }
    }

    fn depends_on(&self) -> BTreeMap<String, Option<String>> {
        match &self.depends_on {
            None => BTreeMap::new(),
            Some(DependsOn::List(list)) => list.iter().map(|name| (name.clone(), None)).collect(),
            Some(DependsOn::Map(map)) => map
                .iter()
                .map(|(name, dependency)| (name.clone(), dependency.condition.clone()))
                .collect(),
        }
    }

    /// The published ports as (host port, container port); the host port is `None`
    /// when Docker picks it.
    fn published(&self) -> Vec<(Option<u16>, u16)> {
        self.ports.iter().map(published_port).collect()
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// Reads a short-syntax port entry: `C`, `H:C` or `IP:H:C`, optionally with `/tcp`.
fn published_port(entry: &Value) -> (Option<u16>, u16) {
    let text = scalar(entry);
    let text = text.split('/').next().expect("split yields one item");
    let port = |part: &str| -> u16 {
        part.parse()
            .unwrap_or_else(|_| panic!("port {part:?} of {text:?} is not a single port"))
    };
    let parts: Vec<&str> = text.split(':').collect();
    match parts.as_slice() {
        [container] => (None, port(container)),
        [host, container] | [_, host, container] => (Some(port(host)), port(container)),
        _ => panic!("cannot read the port entry {text:?}"),
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the example crate lives in the workspace")
        .to_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The compose file with its `<<` merge keys applied, as Compose reads it.
fn compose() -> Compose {
    let text = read(&repo_root().join("docker-compose.yml"));
    let mut value: Value = serde_yaml_ng::from_str(&text).expect("docker-compose.yml is YAML");
    value.apply_merge().expect("the merge keys are valid");
    serde_yaml_ng::from_value(value).expect("docker-compose.yml has the expected shape")
}

// ---------------------------------------------------------------------------------------
// Each of our services' command, parsed with its binary's own clap definition.

#[derive(Debug)]
enum Run {
    Proxy(damrey_proxy::Cli),
    Agent(damrey_agent::Cli),
    Worker(WorkerArgs),
    Entry(EntryArgs),
}

/// Parses `command` as the binary it names would, or `None` when it is not one of ours.
fn parse_command(command: &[String]) -> Option<Result<Run, clap::Error>> {
    let program = command.first()?;
    let args = command.iter().map(OsString::from);
    Some(match program.as_str() {
        "damrey-proxy" => damrey_proxy::Cli::try_parse_from(args).map(Run::Proxy),
        "damrey-agent" => {
            damrey_agent::Cli::try_parse_from(damrey_agent::Cli::seed_args(args)).map(Run::Agent)
        }
        "entry" => EntryArgs::try_parse_from(args).map(Run::Entry),
        name if WORKER_BINARIES.contains(&name) => {
            WorkerArgs::try_parse_from(args).map(Run::Worker)
        }
        _ => return None,
    })
}

/// A worker process of the compose file.
struct WorkerService {
    service: String,
    /// The worker name it attaches as: `--name`, or its binary's default.
    name: String,
    args: WorkerArgs,
}

/// Our services, found by the binary each runs.
struct Mesh {
    compose: Compose,
    proxy: (String, damrey_proxy::Cli),
    agent: (String, damrey_agent::Cli),
    workers: Vec<WorkerService>,
    /// The entry service and its HTTP address.
    entry: (String, String),
}

impl Mesh {
    fn service(&self, name: &str) -> &Service {
        self.compose
            .services
            .get(name)
            .unwrap_or_else(|| panic!("no service {name:?} in docker-compose.yml"))
    }

    /// The service every worker waits for to complete: the config registration.
    fn registration(&self) -> (&str, &Service) {
        let name = self
            .compose
            .services
            .values()
            .flat_map(Service::depends_on)
            .find(|(_, condition)| condition.as_deref() == Some("service_completed_successfully"))
            .map(|(name, _)| name)
            .expect("the workers wait for a registration service");
        let (name, service) = self
            .compose
            .services
            .get_key_value(&name)
            .unwrap_or_else(|| panic!("no service {name:?} in docker-compose.yml"));
        (name, service)
    }
}

fn mesh() -> Mesh {
    let compose = compose();
    let (mut proxies, mut agents, mut workers, mut entries) = (vec![], vec![], vec![], vec![]);
    for (name, service) in &compose.services {
        let command = service.command();
        let Some(parsed) = parse_command(&command) else {
            continue;
        };
        let run = parsed.unwrap_or_else(|e| {
            panic!("service {name}'s command {command:?} does not parse:\n{e}")
        });
        let default_name = command[0].clone();
        match run {
            Run::Proxy(cli) => proxies.push((name.clone(), cli)),
            Run::Agent(cli) => agents.push((name.clone(), cli)),
            Run::Worker(args) => workers.push(WorkerService {
                service: name.clone(),
                name: args.name.clone().unwrap_or(default_name),
                args,
            }),
            Run::Entry(args) => {
                entries.push((name.clone(), args.http.clone()));
                workers.push(WorkerService {
                    service: name.clone(),
                    name: args.worker.name.clone().unwrap_or(default_name),
                    args: args.worker,
                });
            }
        }
    }
    assert_eq!(proxies.len(), 1, "one proxy service");
    assert_eq!(agents.len(), 1, "one agent service");
    assert_eq!(entries.len(), 1, "one entry service");
    Mesh {
        compose,
        proxy: proxies.remove(0),
        agent: agents.remove(0),
        workers,
        entry: entries.remove(0),
    }
}

fn host_port(address: &str) -> (String, u16) {
    let (host, port) = address
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{address:?} is not host:port"));
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("{address:?} has no valid port"));
    (host.to_owned(), port)
}

// ---------------------------------------------------------------------------------------
// The checks.

#[test]
fn every_service_of_our_image_runs_one_of_our_binaries_with_flags_it_accepts() {
    let compose = compose();
    let ours: Vec<(&String, &Service)> = compose
        .services
        .iter()
        .filter(|(_, service)| service.build.is_some())
        .collect();
    assert!(
        ours.len() >= 5,
        "proxy, agent and the workers are built here"
    );
    for (name, service) in ours {
        let command = service.command();
        let program = service.program().unwrap_or_default();
        assert!(
            OUR_BINARIES.contains(&program.as_str()) || program == "sh",
            "service {name} runs {program:?}, which is none of our binaries"
        );
        if let Some(Err(e)) = parse_command(&command) {
            panic!("service {name}'s command {command:?} does not parse:\n{e}");
        }
    }
    // mesh() parses every command and finds exactly one proxy, agent and entry.
    let mesh = mesh();
    let started: Vec<&str> = mesh.workers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        started,
        ["add", "entry", "square"],
        "the example line's workers run"
    );
}

#[test]
fn a_mistyped_flag_or_a_bad_value_fails_the_parse() {
    let words = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    for bad in [
        "add --agnet agent:7701",
        "entry --agent agent:7701 --htp 0.0.0.0:8080",
        "square --retries many",
        "damrey-proxy -p 77000",
        "damrey-proxy --database postgres://x",
        "damrey-agent -p 7701 -pr",
        "damrey-agent -x proxy:7700",
    ] {
        assert!(
            matches!(parse_command(&words(bad)), Some(Err(_))),
            "{bad:?} should not parse"
        );
    }
    assert!(
        matches!(parse_command(&words("damrey-agent -pr proxy:7700")), Some(Ok(Run::Agent(cli))) if cli.proxy.as_deref() == Some("proxy:7700"))
    );
    assert!(parse_command(&words("sh -c true")).is_none());
}

#[test]
fn the_proxy_agent_and_entry_listen_and_publish_on_the_design_ports() {
    let mesh = mesh();
    let (proxy, cli) = &mesh.proxy;
    assert_eq!(
        cli.port,
        Some(PROXY_PORT),
        "the proxy is started with -p {PROXY_PORT}"
    );
    assert_eq!(
        cli.host.as_deref().unwrap_or("0.0.0.0"),
        "0.0.0.0",
        "the proxy binds all interfaces"
    );
    assert_eq!(
        mesh.service(proxy).published(),
        [(Some(PROXY_PORT), PROXY_PORT)]
    );

    let (agent, cli) = &mesh.agent;
    assert_eq!(
        cli.port,
        Some(AGENT_PORT),
        "the agent is started with -p {AGENT_PORT}"
    );
    assert_eq!(
        cli.host.as_deref().unwrap_or("0.0.0.0"),
        "0.0.0.0",
        "the agent binds all interfaces"
    );
    assert_eq!(
        mesh.service(agent).published(),
        [(Some(AGENT_PORT), AGENT_PORT)]
    );

    let (entry, http) = &mesh.entry;
    assert_eq!(
        http,
        &format!("0.0.0.0:{ENTRY_HTTP_PORT}"),
        "entry serves HTTP on all interfaces"
    );
    assert_eq!(
        mesh.service(entry).published(),
        [(Some(ENTRY_HTTP_PORT), ENTRY_HTTP_PORT)]
    );
}

#[test]
fn no_service_of_ours_uses_a_reserved_port() {
    let mesh = mesh();
    let mut ports = vec![
        mesh.proxy.1.port.expect("the proxy has -p"),
        mesh.agent.1.port.expect("the agent has -p"),
        host_port(&mesh.entry.1).1,
    ];
    for service in mesh.compose.services.values() {
        if service.build.is_some() {
            for (host, container) in service.published() {
                ports.extend(host);
                ports.push(container);
            }
        }
    }
    for port in ports {
        assert!(
            !RESERVED_PORTS.contains(&port),
            "port {port} is reserved for another system"
        );
    }
}

#[test]
fn the_proxy_stores_its_configs_in_the_postgres_service() {
    let mesh = mesh();
    let proxy = mesh.service(&mesh.proxy.0);
    let url = proxy
        .env()
        .get("DATABASE_URL")
        .cloned()
        .expect("the proxy's environment sets DATABASE_URL");
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .unwrap_or_else(|| panic!("DATABASE_URL {url:?} is not a postgres:// URL"));
    let authority = rest.split('/').next().expect("split yields one item");
    let host_and_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, after)| after);
    let host = host_and_port
        .split(':')
        .next()
        .expect("split yields one item");
    assert!(rest.contains('/'), "DATABASE_URL {url:?} names a database");

    let postgres = mesh.service(host);
    let image = postgres.image.clone().unwrap_or_default();
    assert!(
        image.starts_with("postgres"),
        "service {host} runs a Postgres image, not {image:?}"
    );
    let check = postgres
        .healthcheck
        .as_ref()
        .expect("Postgres has a healthcheck")
        .test
        .to_vec();
    assert!(
        check.join(" ").contains("pg_isready"),
        "Postgres is checked with pg_isready: {check:?}"
    );
    assert_eq!(
        proxy.depends_on().get(host),
        Some(&Some("service_healthy".to_owned())),
        "the proxy waits for a healthy Postgres"
    );
}

#[test]
fn the_agent_and_the_workers_reach_each_other_by_service_name_and_port() {
    let mesh = mesh();
    let (proxy, proxy_cli) = &mesh.proxy;
    let (agent, agent_cli) = &mesh.agent;
    let agent_port = agent_cli.port.expect("the agent has -p");

    let expected_proxy = (proxy.clone(), proxy_cli.port.expect("the proxy has -p"));
    let to_proxy = agent_cli.proxy.as_deref().expect("the agent has -pr");
    assert_eq!(
        host_port(to_proxy),
        expected_proxy,
        "the agent's -pr names the proxy"
    );
    let advertised = agent_cli.advertise.as_deref().expect("the agent has -a");
    assert_eq!(
        host_port(advertised),
        (agent.clone(), agent_port),
        "the agent advertises itself"
    );

    for worker in &mesh.workers {
        assert_eq!(
            host_port(&worker.args.agent),
            (agent.clone(), agent_port),
            "worker service {}'s --agent names the agent",
            worker.service
        );
    }
}

#[test]
fn every_started_worker_has_a_config_that_the_registration_posts_to_the_proxy() {
    let mesh = mesh();
    let (name, registration) = mesh.registration();

    // The registration mounts the configs folder and posts every JSON file in it.
    let (source, target) = registration
        .volumes
        .iter()
        .find_map(|volume| {
            let mut parts = volume.split(':');
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .unwrap_or_else(|| panic!("the registration service {name} mounts the configs"));
    let script = registration.command().join(" ");
    assert!(
        script.contains(&format!("{target}/*.json")),
        "{name} posts every file in {target}"
    );
    let proxy_url = format!("http://{}:{}", mesh.proxy.0, mesh.proxy.1.port.expect("-p"));
    assert!(
        script.contains(&format!("{proxy_url}/worker/add")),
        "{name} posts to {proxy_url}"
    );
    assert_eq!(
        registration.depends_on().get(&mesh.proxy.0),
        Some(&Some("service_healthy".to_owned())),
        "the registration waits for a healthy proxy"
    );

    let configs = repo_root().join(source.trim_start_matches("./"));
    let started: Vec<&str> = mesh.workers.iter().map(|w| w.name.as_str()).collect();
    for worker in &started {
        let file = configs.join(format!("{worker}.json"));
        let config: Value = serde_yaml_ng::from_str(&read(&file)).expect("a config is JSON");
        assert_eq!(
            config["name"].as_str(),
            Some(*worker),
            "{} names its worker",
            file.display()
        );
        // Where a line goes next must be running too, or requests would end in ERROR.
        for command in config["commands"]
            .as_sequence()
            .expect("a config lists commands")
        {
            let next = command["worker"]
                .as_str()
                .expect("a command names its next worker");
            assert!(
                next.is_empty() || started.contains(&next),
                "{worker} sends to {next}, which is not started"
            );
        }
    }
}

#[test]
fn workers_start_after_their_configs_are_registered_and_the_agent_is_healthy() {
    let mesh = mesh();
    let (registration, _) = mesh.registration();
    for worker in &mesh.workers {
        let service = mesh.service(&worker.service);
        let depends_on = service.depends_on();
        assert_eq!(
            depends_on.get(registration),
            Some(&Some("service_completed_successfully".to_owned())),
            "{} waits for the registration",
            worker.service
        );
        assert_eq!(
            depends_on.get(&mesh.agent.0),
            Some(&Some("service_healthy".to_owned())),
            "{} waits for a healthy agent",
            worker.service
        );
    }
    for (name, port) in [
        (&mesh.proxy.0, PROXY_PORT),
        (&mesh.agent.0, AGENT_PORT),
        (&mesh.entry.0, ENTRY_HTTP_PORT),
    ] {
        let check = mesh
            .service(name)
            .healthcheck
            .as_ref()
            .map(|h| h.test.to_vec().join(" "));
        let url = format!("http://127.0.0.1:{port}/healthz");
        assert!(
            check.as_deref().is_some_and(|c| c.contains(&url)),
            "{name} is checked at {url}"
        );
    }
}

#[test]
fn the_token_if_set_anywhere_is_the_same_on_every_damrey_service() {
    let compose = compose();
    let tokens: BTreeMap<&String, Option<String>> = compose
        .services
        .iter()
        .filter(|(_, service)| service.build.is_some())
        .map(|(name, service)| (name, service.env().get("DAMREY_TOKEN").cloned()))
        .collect();
    let anywhere = compose
        .services
        .values()
        .any(|s| s.env().contains_key("DAMREY_TOKEN"));
    if anywhere {
        let first = tokens.values().next().expect("there are services").clone();
        assert!(
            first.is_some(),
            "DAMREY_TOKEN is set on every Damrey service: {tokens:?}"
        );
        assert!(
            tokens.values().all(|token| *token == first),
            "one token everywhere: {tokens:?}"
        );
    }
}

#[test]
fn the_registration_script_is_valid_shell_with_its_dollars_escaped_from_compose() {
    let mesh = mesh();
    let (name, registration) = mesh.registration();
    let command = registration.command();
    assert_eq!(&command[..2], ["sh", "-c"], "{name} runs a shell script");
    let script = &command[2];
    // Compose replaces `$VAR` itself; the script's own variables must be written `$$`.
    assert!(
        !script.replace("$$", "").contains('$'),
        "{name}'s script has a `$` that Compose would interpolate"
    );
    let script = script.replace("$$", "$");
    let checked = std::process::Command::new("sh")
        .args(["-n", "-c", &script])
        .output()
        .expect("sh runs");
    assert!(
        checked.status.success(),
        "{name}'s script is not valid shell: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn the_dockerfile_builds_and_ships_every_binary_the_compose_file_runs() {
    let compose = compose();
    let dockerfile = read(&repo_root().join("Dockerfile"));
    let build = dockerfile
        .split("\nFROM ")
        .find(|stage| stage.contains("cargo build"))
        .expect("a stage runs cargo build");
    assert!(
        build.contains("--release"),
        "the binaries are built in release"
    );
    let runtime = dockerfile
        .rsplit("\nFROM ")
        .next()
        .expect("split yields one item");
    assert!(
        runtime.contains("COPY --from=build"),
        "the runtime stage takes the binaries from the builder"
    );
    assert!(
        runtime.contains("curl"),
        "the runtime has curl for the healthchecks"
    );

    let images: Vec<(&String, &Service)> = compose
        .services
        .iter()
        .filter(|(_, s)| s.build.is_some())
        .collect();
    for (name, service) in &images {
        assert_eq!(
            service.build,
            Some(Value::from(".")),
            "service {name} builds ./Dockerfile"
        );
        assert_eq!(
            service.image, images[0].1.image,
            "service {name} shares the one image"
        );
        let program = service.program().expect("our services name their binary");
        if OUR_BINARIES.contains(&program.as_str()) {
            assert!(
                build.contains(&format!("--bin {program}")),
                "the Dockerfile builds {program}"
            );
            assert!(
                build.contains(&format!("target/release/{program}")),
                "the Dockerfile ships {program}"
            );
        }
    }

    // The build context keeps what the build needs.
    let ignored = read(&repo_root().join(".dockerignore"));
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "migrations",
        "damrey-actors",
        "damrey-proxy",
        "damrey-agent",
        "damrey-example",
    ] {
        assert!(
            !ignored
                .lines()
                .any(|line| line.trim().trim_matches('/') == needed),
            ".dockerignore keeps {needed}"
        );
    }
}
