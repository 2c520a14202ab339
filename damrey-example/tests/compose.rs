//! `docker-compose.yml` brought up for real: Postgres, the proxy on it, the registration,
//! the agent and the workers, each its own container, driven from this host. It computes
//! 49; a killed `square` fires `no_instance`, which resolves once it is back; three `add`
//! replicas share the load; the line keeps running while the proxy is down and after it
//! restarts; and `down -v` leaves nothing of the project behind.
//!
//! It runs the image `damrey:local` as it is on this machine and checks that it was made
//! from this tree (scripts/offline-images stamps it), so it never tests stale binaries.
//! Without Docker it is skipped, unless `DAMREY_REQUIRE_DOCKER=1` (CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use damrey_testcontainers::docker_or_skip;
use serde_json::Value;

/// How long a state may take to arrive before the test gives up and says which.
const PATIENCE: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(250);

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The compose command this machine has: `docker compose` (v2) or `docker-compose` (v1).
fn compose_command() -> Vec<String> {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if works("docker", &["compose", "version"]) {
        vec!["docker".into(), "compose".into()]
    } else if works("docker-compose", &["version"]) {
        vec!["docker-compose".into()]
    } else {
        panic!("Docker is here but neither `docker compose` nor `docker-compose` is")
    }
}

/// One compose project, with its own name and host ports chosen by Docker; `down -v`
/// on drop, however the test ends.
struct Project {
    name: String,
    compose: Vec<String>,
    down: bool,
}

impl Project {
    fn new() -> Project {
        Project {
            name: format!(
                "damrey-test-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            compose: compose_command(),
            down: false,
        }
    }

    /// Runs `compose ARGS` for this project and returns its output (also on failure).
    fn run(&self, args: &[&str]) -> Output {
        let repository = repository();
        Command::new(&self.compose[0])
            .args(&self.compose[1..])
            .args(["-p", &self.name, "-f"])
            .arg(repository.join("docker-compose.yml"))
            .args(args)
            .current_dir(&repository)
            // Empty host ports: Docker picks free ones, read back with `port`.
            .env("DAMREY_PROXY_PORT", "")
            .env("DAMREY_AGENT_PORT", "")
            .env("DAMREY_HTTP_PORT", "")
            .env("DAMREY_PUBLISH_HOST", "127.0.0.1")
            .env_remove("DAMREY_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("the compose command runs")
    }

    /// Runs `compose ARGS` and panics with its output unless it succeeds.
    fn must(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "`compose {}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The `127.0.0.1:port` a service's port is published on (it changes when the
    /// container is recreated or restarted).
    fn address(&self, service: &str, port: u16) -> String {
        let published = self.must(&["port", service, &port.to_string()]);
        let port = published.rsplit(':').next().unwrap();
        format!("127.0.0.1:{port}")
    }

    /// The ids of a service's containers, running or not.
    fn containers(&self, service: &str) -> Vec<String> {
        self.must(&["ps", "-q", service])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// What the project left on the engine: containers, networks and volumes.
    fn leftovers(&self) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.name);
        [
            vec!["ps", "-a", "-q", "--filter", &label],
            vec!["network", "ls", "-q", "--filter", &label],
            vec!["volume", "ls", "-q", "--filter", &label],
        ]
        .iter()
        .flat_map(|args| {
            let output = Command::new("docker").args(args).output().unwrap();
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(|line| format!("{} {line}", args[0]))
                .collect::<Vec<_>>()
        })
        .collect()
    }

    fn logs(&self) -> String {
        let output = self.run(&["logs", "--no-color", "--tail", "30"]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `down -v`, once.
    fn down(&mut self) {
        if !self.down {
            self.down = true;
            self.run(&["down", "-v", "--remove-orphans", "-t", "5"]);
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("logs of compose project {}:\n{}", self.name, self.logs());
        }
        self.down();
    }
}

/// Checks that `damrey:local` was made from this tree by scripts/offline-images.
fn image_is_from_this_tree() {
    let image = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"damrey.source\"}}",
            "damrey:local",
        ])
        .output()
        .unwrap();
    assert!(
        image.status.success(),
        "the image damrey:local is missing: make it with scripts/offline-images"
    );
    let stamp = Command::new(repository().join("scripts/offline-images"))
        .arg("--source-stamp")
        .output()
        .unwrap();
    assert!(
        stamp.status.success(),
        "scripts/offline-images --source-stamp failed"
    );
    let (image, tree) = (
        String::from_utf8_lossy(&image.stdout).trim().to_owned(),
        String::from_utf8_lossy(&stamp.stdout).trim().to_owned(),
    );
    assert_eq!(
        image, tree,
        "damrey:local was not made from this tree (its source stamp is {image:?}, the \
         tree's {tree:?}): run scripts/offline-images so the test does not run stale binaries"
    );
}

/// Polls `check` until it gives a value; panics saying what was awaited and last seen.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if started.elapsed() > PATIENCE => {
                panic!("{what}: not seen within {PATIENCE:?}; last: {last}")
            }
            Err(_) => actix_rt::time::sleep(POLL).await,
        }
    }
}

async fn get(url: &str) -> Result<(u16, String), String> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let mut response = client.get(url).send().await.map_err(|e| e.to_string())?;
    let body = response.body().await.map_err(|e| e.to_string())?;
    Ok((
        response.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

async fn get_json(url: &str) -> Result<Value, String> {
    match get(url).await? {
        (200, body) => serde_json::from_str(&body).map_err(|e| format!("{e}: {body}")),
        (status, body) => Err(format!("{status} {body}")),
    }
}

/// `entry`'s front door computes (3+4)^2.
async fn sqsum(entry: &str) -> Result<(), String> {
    match get(&format!("http://{entry}/sqsum?a=3&b=4")).await? {
        (200, body) if body.trim() == "49" => Ok(()),
        (status, body) => Err(format!("{status} {body}")),
    }
}

/// The active (with `all`, also the resolved) `no_instance` alarms of `square`.
async fn square_alarm(proxy: &str, all: bool) -> Result<Vec<Value>, String> {
    let alarms = get_json(&format!("http://{proxy}/alarms?all={all}")).await?;
    Ok(alarms["alarms"]
        .as_array()
        .ok_or("no alarms list")?
        .iter()
        .filter(|alarm| alarm["rule"] == "no_instance" && alarm["worker"] == "square")
        .cloned()
        .collect())
}

/// The live instances of `add` with what each has received: `(agent, instance) => received`.
async fn add_instances(proxy: &str) -> Result<Vec<((String, u64), u64)>, String> {
    let stats = get_json(&format!("http://{proxy}/workers/stats")).await?;
    let add = stats["workers"]
        .as_array()
        .ok_or("no workers list")?
        .iter()
        .find(|worker| worker["worker"] == "add")
        .ok_or("add is not in /workers/stats")?;
    Ok(add["instances"]
        .as_array()
        .ok_or("add has no instances list")?
        .iter()
        .filter(|instance| instance["live"] == true)
        .map(|instance| {
            let key = (
                instance["agent"].as_str().unwrap_or_default().to_owned(),
                instance["instance"].as_u64().unwrap_or_default(),
            );
            (
                key,
                instance["totals"]["received"].as_u64().unwrap_or_default(),
            )
        })
        .collect())
}

#[actix_rt::test]
async fn the_compose_example_runs_heals_scales_and_leaves_nothing_behind() {
    if !docker_or_skip("the_compose_example_runs_heals_scales_and_leaves_nothing_behind") {
        return;
    }
    image_is_from_this_tree();
    let mut project = Project::new();

    // Up: Postgres, the proxy, the registration, the agent, the workers; then 49.
    let started = Instant::now();
    project.must(&["up", "-d", "--no-build"]);
    let entry = project.address("entry", 8080);
    eventually("49 from entry's front door", || sqsum(&entry)).await;
    println!(
        "from `up` to the first 49: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let proxy = project.address("proxy", 7700);
    let stored = get_json(&format!("http://{proxy}/workers/get"))
        .await
        .unwrap();
    let names: Vec<_> = stored["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].clone())
        .collect();
    assert_eq!(
        names,
        ["add", "entry", "square"],
        "the registered configs, from Postgres"
    );

    // Kill square: no_instance fires; start it again: the alarm resolves, 49 again.
    let square = project.containers("square");
    assert_eq!(square.len(), 1);
    project.must(&["kill", "square"]);
    let fired = eventually("no_instance firing for the killed square", || async {
        match square_alarm(&proxy, false).await?.pop() {
            Some(alarm) => Ok(alarm),
            None => Err("no active no_instance alarm for square".to_owned()),
        }
    })
    .await;
    assert_eq!(fired["resolved_ms"], Value::Null);
    project.must(&["start", "square"]);
    eventually("no_instance resolving once square is back", || async {
        let alarms = square_alarm(&proxy, true).await?;
        match alarms.iter().find(|alarm| alarm["id"] == fired["id"]) {
            Some(alarm) if alarm["resolved_ms"].is_u64() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    eventually("49 with square back", || sqsum(&entry)).await;

    // Scale add to 3: each of the three live instances gets some of the load.
    project.must(&[
        "up",
        "-d",
        "--no-build",
        "--no-recreate",
        "--scale",
        "add=3",
    ]);
    assert_eq!(project.containers("add").len(), 3);
    let before = eventually("three live add instances", || async {
        let instances = add_instances(&proxy).await?;
        if instances.len() == 3 {
            Ok(instances)
        } else {
            Err(format!("{instances:?}"))
        }
    })
    .await;
    for _ in 0..30 {
        sqsum(&entry).await.unwrap();
    }
    eventually(
        "every add instance received some of the 30 requests",
        || async {
            let after = add_instances(&proxy).await?;
            let shared = before.iter().all(|(key, received)| {
                after
                    .iter()
                    .any(|(other, now)| other == key && now > received)
            });
            if shared {
                Ok(())
            } else {
                Err(format!("before {before:?}, after {after:?}"))
            }
        },
    )
    .await;

    // Stop the proxy: the agent keeps routing from its last configs; start it again.
    project.must(&["stop", "proxy"]);
    eventually("49 while the proxy is down", || sqsum(&entry)).await;
    project.must(&["start", "proxy"]);
    let proxy = project.address("proxy", 7700);
    eventually("the restarted proxy ready", || async {
        match get(&format!("http://{proxy}/readyz")).await? {
            (200, _) => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
    eventually("49 after the proxy's restart", || sqsum(&entry)).await;
    eventually(
        "add's three instances reported to the restarted proxy",
        || async {
            let instances = add_instances(&proxy).await?;
            if instances.len() == 3 {
                Ok(())
            } else {
                Err(format!("{instances:?}"))
            }
        },
    )
    .await;

    // Down -v: no container, network or volume of the project is left.
    project.down();
    assert_eq!(project.leftovers(), Vec::<String>::new());
}
