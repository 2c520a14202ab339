//! The dashboard in a real browser: `damrey-example/run` on ports the OS hands out, the
//! proxy's `/` loaded in headless Chromium, and the DOM after the page's script ran must
//! show the workers entry, add and square and the lines between them; then `square` is
//! killed and the page must show its `no_instance` alarm.
//!
//! Chromium is `/usr/bin/chromium` (Debian's `chromium` package). Without it the test
//! says it is skipped and passes, so that `cargo test --workspace` works with only Rust;
//! with `DAMREY_REQUIRE_BROWSER=1` (as in CI) a missing Chromium fails it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use damrey_mesh_tests::example::{Example, text};
use damrey_mesh_tests::process::TempDir;
use damrey_mesh_tests::wait::{eventually, eventually_seen};

const CHROMIUM: &str = "/usr/bin/chromium";
/// How much of the page's own time one Chromium run lets pass before dumping the DOM:
/// enough for the first poll and a couple more.
const PAGE_TIME: Duration = Duration::from_millis(3000);
/// The longest one Chromium run may take in wall-clock time before it is killed.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(45);

/// Chromium, or `None` when the test is to be skipped.
fn chromium() -> Option<PathBuf> {
    let path = Path::new(CHROMIUM);
    if path.exists() {
        return Some(path.to_owned());
    }
    let required = std::env::var("DAMREY_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "DAMREY_REQUIRE_BROWSER=1 but {CHROMIUM} is missing; install it: \
         apt-get install -y chromium"
    );
    // Straight to stderr, past the test harness's capture, so that the skip shows.
    let _ = writeln!(
        std::io::stderr(),
        "dashboard browser test skipped: install chromium ({CHROMIUM}, apt-get install -y chromium) \
         to run it; DAMREY_REQUIRE_BROWSER=1 makes its absence a failure"
    );
    None
}

/// One headless Chromium run in its own process group, killed as a group when done.
struct Browser {
    child: Child,
    _profile: TempDir,
}

impl Browser {
    /// Sends SIGKILL to Chromium and every process it started (they share its group).
    fn kill_group(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill_group();
    }
}

fn reader(mut stream: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    })
}

/// Loads `url` in a fresh headless Chromium (a new profile each time) and returns the DOM
/// once [`PAGE_TIME`] of the page's time has passed.
async fn dump_dom(chromium: &Path, url: &str) -> String {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let profile = TempDir(std::env::temp_dir().join(format!(
        "damrey-dashboard-chromium-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    )));
    let child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .arg(format!("--virtual-time-budget={}", PAGE_TIME.as_millis()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("chromium starts");
    let mut browser = Browser {
        child,
        _profile: profile,
    };
    let stdout = reader(browser.child.stdout.take().expect("piped"));
    let stderr = reader(browser.child.stderr.take().expect("piped"));
    // A Chromium that hangs is killed with its group when `browser` drops.
    let what = format!("chromium finishes loading {url}");
    let status = eventually(CHROMIUM_TIMEOUT, &what, || {
        std::future::ready(browser.child.try_wait().expect("waiting on chromium"))
    })
    .await;
    // Helpers it left behind would hold the pipes open.
    browser.kill_group();
    let dom = stdout.join().unwrap_or_default();
    let log = stderr.join().unwrap_or_default();
    assert!(
        status.success() && !dom.is_empty(),
        "chromium failed on {url} ({status}): {log}"
    );
    dom
}

/// The attributes of every `<tag ...>` in `dom`, entities decoded.
fn tags(dom: &str, tag: &str) -> Vec<HashMap<String, String>> {
    let open = format!("<{tag} ");
    let mut found = Vec::new();
    let mut rest = dom;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let end = after.find('>').unwrap_or(after.len());
        found.push(attributes(&after[..end]));
        rest = &after[end..];
    }
    found
}

fn attributes(mut text: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    loop {
        text = text.trim_start();
        let Some(eq) = text.find("=\"") else {
            return map;
        };
        let name = text[..eq].trim().to_owned();
        let value_start = &text[eq + 2..];
        let Some(close) = value_start.find('"') else {
            return map;
        };
        let value = value_start[..close]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        map.insert(name, value);
        text = &value_start[close + 1..];
    }
}

/// The DOM's elements `<tag class="class" ...>` as attribute maps.
fn with_class(dom: &str, tag: &str, class: &str) -> Vec<HashMap<String, String>> {
    tags(dom, tag)
        .into_iter()
        .filter(|attrs| {
            attrs
                .get("class")
                .is_some_and(|c| c.split_whitespace().any(|c| c == class))
        })
        .collect()
}

fn attr<'a>(attrs: &'a HashMap<String, String>, name: &str) -> &'a str {
    attrs.get(name).map_or("", String::as_str)
}

fn has_edge(dom: &str, from: &str, to: &str, kind: &str) -> bool {
    with_class(dom, "g", "edge").iter().any(|edge| {
        attr(edge, "data-from") == from
            && attr(edge, "data-to") == to
            && attr(edge, "data-type") == kind
    })
}

fn node<'a>(
    nodes: &'a [HashMap<String, String>],
    worker: &str,
) -> Option<&'a HashMap<String, String>> {
    nodes.iter().find(|n| attr(n, "data-worker") == worker)
}

/// Loads the page again and again until `done` holds for its DOM, or panics after `within`
/// with `what` and the last DOM.
async fn wait_for_dom(
    chromium: &Path,
    url: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    eventually_seen(within, &format!("the dashboard shows {what}"), || async {
        let dom = dump_dom(chromium, url).await;
        if done(&dom) {
            return Ok(dom);
        }
        Err(format!(
            "{}the page's body:\n{}",
            if dom.contains("monitoring unavailable") {
                "(it says \"monitoring unavailable\": the proxy has no /workers/stats or /alarms) "
            } else {
                ""
            },
            body(&dom)
        ))
    })
    .await
}

/// The DOM's `<body>` without its script, to show in a failure.
fn body(dom: &str) -> &str {
    let start = dom.find("<body").unwrap_or(0);
    let end = dom
        .find("<script")
        .filter(|&end| end > start)
        .unwrap_or(dom.len());
    &dom[start..end]
}

fn ready(dom: &str) -> bool {
    tags(dom, "body")
        .first()
        .is_some_and(|body| attr(body, "data-ready") == "1")
}

#[actix_rt::test]
async fn the_dashboard_draws_the_example_line_and_shows_the_alarm_of_a_killed_worker() {
    let Some(chromium) = chromium() else {
        return;
    };
    let example = Example::new("dashboard");
    let run = example.script("run");
    assert!(run.status.success(), "run failed: {}", text(&run));
    let url = format!("http://127.0.0.1:{}/", example.ports().proxy);

    let dom = wait_for_dom(
        &chromium,
        &url,
        Duration::from_secs(60),
        "the first render",
        ready,
    )
    .await;

    let nodes = with_class(&dom, "g", "node");
    for worker in ["entry", "add", "square"] {
        assert!(
            node(&nodes, worker).is_some(),
            "no node for {worker} in:\n{dom}"
        );
    }
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert!(
        has_edge(&dom, "entry", "add", "sqsum"),
        "no edge entry→add in:\n{dom}"
    );
    assert!(
        has_edge(&dom, "add", "square", "sqsum"),
        "no edge add→square in:\n{dom}"
    );
    assert!(
        has_edge(&dom, "square", "", "sqsum"),
        "the line does not end after square:\n{dom}"
    );

    let square = example
        .pids()
        .into_iter()
        .find_map(|(pid, name)| (name == "square").then_some(pid))
        .expect("run recorded square's pid");
    let kill = Command::new("kill")
        .args(["-KILL", &square.to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success(), "could not kill square (pid {square})");

    // Needs the proxy's monitoring (`/workers/stats`, `/alarms`): without it the page says
    // "monitoring unavailable" and this wait fails with that DOM.
    let dom = wait_for_dom(
        &chromium,
        &url,
        Duration::from_secs(20),
        "a no_instance alarm for square",
        |dom| {
            with_class(dom, "li", "alarm").iter().any(|alarm| {
                attr(alarm, "data-rule") == "no_instance" && attr(alarm, "data-worker") == "square"
            })
        },
    )
    .await;
    let nodes = with_class(&dom, "g", "node");
    assert_eq!(
        node(&nodes, "square").map(|n| attr(n, "data-state")),
        Some("alarm"),
        "square's node is not red: {nodes:?}"
    );

    // A config whose next worker is not configured is stored, and the page says so.
    let added = Command::new("curl")
        .args([
            "-sf",
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"name":"relay","commands":[{"name":"shout","worker":"nowhere"}]}"#,
            &format!("{url}worker/add"),
        ])
        .output()
        .expect("curl runs");
    assert!(added.status.success(), "add failed: {}", text(&added));
    wait_for_dom(
        &chromium,
        &url,
        Duration::from_secs(20),
        "the warning about relay's config",
        |dom| {
            with_class(dom, "li", "config-warning")
                .iter()
                .any(|warning| {
                    attr(warning, "data-worker") == "relay"
                        && attr(warning, "title").contains("goes to worker nowhere")
                })
        },
    )
    .await;
}
