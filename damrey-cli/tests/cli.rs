//! The `damrey` binary against a real proxy (on SQLite) and a real agent, both started in
//! this process from their libraries, with a worker attached to the agent; every command
//! is run as a user runs it, and its output and exit code checked.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use actix::{Actor, Context, Handler};
use damrey_actors::{Config, Message, Worker, WorkerHandle};

const TOKEN: &str = "s3cret";

/// Answers `shout` with its arguments in capitals, `nap` after sleeping as many ms as its
/// argument says, and `quit` with `STOP`.
struct Shouter;

impl Actor for Shouter {
    type Context = Context<Self>;
}

impl Handler<Message> for Shouter {
    type Result = Message;

    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        match msg.kind.as_str() {
            "nap" => {
                let ms = msg.args.first().and_then(|ms| ms.parse().ok()).unwrap_or(0);
                std::thread::sleep(Duration::from_millis(ms));
                Message::response("nap", ["awake"])
            }
            "quit" => Message::stop(),
            kind => Message::response(kind, msg.args.iter().map(|arg| arg.to_uppercase())),
        }
    }
}

/// A fresh directory for one test's state.
fn fresh_dir(what: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir =
        std::env::temp_dir().join(format!("damrey-cli-{what}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A proxy and an agent on ports the OS chose, sharing [`TOKEN`].
struct Mesh {
    proxy: String,
    agent: String,
    dir: PathBuf,
}

impl Drop for Mesh {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start_mesh() -> Mesh {
    let dir = fresh_dir("mesh");
    let proxy = damrey_proxy::startup::Application::build(damrey_proxy::config::Settings {
        host: "127.0.0.1".into(),
        port: 0,
        sqlite_path: dir.join("proxy.db").display().to_string(),
        token: Some(TOKEN.into()),
        no_instance_grace_ms: 300,
        alarm_eval_ms: 100,
        ..Default::default()
    })
    .await
    .expect("the proxy starts");
    let proxy_address = format!("127.0.0.1:{}", proxy.port());
    actix_web::rt::spawn(proxy.run_until_stopped());
    let agent = damrey_agent::startup::Application::build(damrey_agent::config::Settings {
        host: "127.0.0.1".into(),
        port: 0,
        proxy: proxy_address.clone(),
        token: Some(TOKEN.into()),
        heartbeat_ms: 100,
        state_dir: dir.join("agent"),
        ..Default::default()
    })
    .expect("the agent starts");
    let agent_address = format!("127.0.0.1:{}", agent.port());
    actix_web::rt::spawn(agent.run_until_stopped());
    Mesh {
        proxy: proxy_address,
        agent: agent_address,
        dir,
    }
}

impl Mesh {
    /// Runs `damrey ARGS` with this mesh's addresses and token in its environment.
    async fn damrey(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_damrey"));
        command
            .args(args)
            .env("DAMREY_PROXY", &self.proxy)
            .env("DAMREY_AGENT", &self.agent)
            .env("DAMREY_TOKEN", TOKEN);
        actix_web::rt::task::spawn_blocking(move || command.output().expect("damrey runs"))
            .await
            .unwrap()
    }

    /// Runs `damrey ARGS` until its stdout satisfies `wanted`, and returns that stdout;
    /// fails the test when none does within 20 s.
    async fn damrey_until(&self, args: &[&str], wanted: impl Fn(&str) -> bool) -> String {
        let give_up = Instant::now() + Duration::from_secs(20);
        loop {
            let output = self.damrey(args).await;
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            if wanted(&stdout) {
                return stdout;
            }
            assert!(
                Instant::now() < give_up,
                "`damrey {}` never showed what was awaited; last: {stdout}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn attach(&self, name: &str) -> WorkerHandle {
        Worker::new(Config::named(name))
            .agent(self.agent.clone())
            .token(Some(TOKEN.into()))
            .start(|| Shouter)
            .await
            .expect("the worker attaches")
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[actix_web::test]
async fn workers_are_added_listed_changed_and_deleted() {
    let mesh = start_mesh().await;
    let file = mesh.dir.join("loud.json");
    std::fs::write(
        &file,
        r#"{"name":"loud","agent":"","mpu":"4","commands":[{"name":"shout","worker":"","mpu":"1"}]}"#,
    )
    .unwrap();

    let added = mesh
        .damrey(&["worker", "add", file.to_str().unwrap()])
        .await;
    assert!(added.status.success(), "{}", stderr(&added));
    assert_eq!(stdout(&added), "added worker loud\n");

    let flags = mesh
        .damrey(&[
            "worker",
            "add",
            "--name",
            "relay",
            "--mpu",
            "2",
            "--command",
            "shout=loud",
        ])
        .await;
    assert!(flags.status.success(), "{}", stderr(&flags));

    let again = mesh
        .damrey(&["worker", "add", file.to_str().unwrap()])
        .await;
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("409"), "{}", stderr(&again));

    let list = mesh.damrey(&["worker", "list"]).await;
    assert_eq!(
        stdout(&list),
        "NAME   AGENT  MPU  COMMANDS\n\
         loud   any    4    shout (ends)\n\
         relay  any    2    shout => loud\n"
    );

    let changed = mesh
        .damrey(&[
            "worker",
            "chg",
            "--name",
            "relay",
            "--mpu",
            "9",
            "--command",
            "shout=",
        ])
        .await;
    assert!(changed.status.success(), "{}", stderr(&changed));
    let got = mesh.damrey(&["worker", "get", "relay", "--json"]).await;
    let relay: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(relay["mpu"], "9");
    assert_eq!(relay["commands"][0]["worker"], "");

    let deleted = mesh.damrey(&["worker", "del", "relay"]).await;
    assert_eq!(stdout(&deleted), "deleted worker relay\n");
    let gone = mesh.damrey(&["worker", "get", "relay"]).await;
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains("404"), "{}", stderr(&gone));

    let bad = mesh
        .damrey(&["worker", "add", "--name", "x", "--command", "nonext"])
        .await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("TYPE=NEXT"), "{}", stderr(&bad));
}

#[actix_web::test]
async fn a_call_prints_the_reply_and_its_exit_code_tells_the_tag() {
    let mesh = start_mesh().await;
    let added = mesh
        .damrey(&[
            "worker",
            "add",
            "--name",
            "loud",
            "--command",
            "shout=",
            "--command",
            "nap=",
            "--command",
            "quit=",
        ])
        .await;
    assert!(added.status.success(), "{}", stderr(&added));
    // The agent learns the config from the proxy's feed; the worker attaches once it has.
    mesh.damrey_until(&["call", "loud", "shout", "x"], |out| out.contains("loud"))
        .await;
    let worker = mesh.attach("loud").await;

    let response = mesh
        .damrey(&["call", "loud", "shout", "hello", "world"])
        .await;
    assert_eq!(stdout(&response), "RESPONSE shout HELLO WORLD\n");
    assert_eq!(response.status.code(), Some(0));

    let json = mesh
        .damrey(&["call", "loud", "shout", "a b", "--json"])
        .await;
    assert_eq!(stdout(&json), "[\"RESPONSE\",\"shout\",\"A B\"]\n");

    let error = mesh.damrey(&["call", "loud", "whisper"]).await;
    assert!(
        stdout(&error).starts_with("ERROR whisper"),
        "{}",
        stdout(&error)
    );
    assert_eq!(error.status.code(), Some(3));

    let timeout = mesh
        .damrey(&["call", "loud", "nap", "2000", "--timeout", "200"])
        .await;
    assert_eq!(stdout(&timeout), "TIMEOUT\n");
    assert_eq!(timeout.status.code(), Some(4));

    let stop = mesh.damrey(&["call", "loud", "quit"]).await;
    assert_eq!(stdout(&stop), "STOP\n");
    assert_eq!(stop.status.code(), Some(5));

    let refused = mesh
        .damrey(&["call", "loud", "shout", "x", "--token", "wrong"])
        .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("401"), "{}", stderr(&refused));

    let nobody = mesh
        .damrey(&["call", "loud", "shout", "--agent", "127.0.0.1:1"])
        .await;
    assert_eq!(nobody.status.code(), Some(1));
    assert!(
        stderr(&nobody).contains("no answer from http://127.0.0.1:1/call/loud"),
        "{}",
        stderr(&nobody)
    );

    let usage = mesh.damrey(&["call", "loud"]).await;
    assert_eq!(usage.status.code(), Some(2), "clap's usage error");
    worker.stop().await;
}

#[actix_web::test]
async fn stats_agents_alarms_and_watch_show_the_mesh() {
    let mesh = start_mesh().await;
    for args in [
        [
            "worker",
            "add",
            "--name",
            "entry",
            "--command",
            "shout=loud",
        ],
        ["worker", "add", "--name", "loud", "--command", "shout="],
        ["worker", "add", "--name", "idle", "--command", "nap="],
    ] {
        let added = mesh.damrey(&args).await;
        assert!(added.status.success(), "{}", stderr(&added));
    }
    mesh.damrey_until(&["call", "loud", "shout"], |out| out.contains("loud"))
        .await;
    let entry = mesh.attach("entry").await;
    let loud = mesh.attach("loud").await;
    for _ in 0..3 {
        let called = mesh.damrey(&["call", "entry", "shout", "hi"]).await;
        assert_eq!(stdout(&called), "RESPONSE shout HI\n");
    }

    let cells = |stats: &str| -> Vec<String> {
        let row = stats
            .lines()
            .find(|line| line.starts_with("loud"))
            .unwrap_or_default();
        row.split_whitespace().map(str::to_owned).collect()
    };
    // The steps processed count those refused too (REFUSED, before PROCESSED): the first
    // call above, when it came before loud attached.
    let refused_and_processed = |out: &str| -> Option<(u64, u64)> {
        match cells(out).as_slice() {
            [.., refused, processed] => Some((refused.parse().ok()?, processed.parse().ok()?)),
            _ => None,
        }
    };
    let stats = mesh
        .damrey_until(&["stats", "--worker", "loud"], |out| {
            refused_and_processed(out).is_some_and(|(refused, processed)| processed == refused + 3)
        })
        .await;
    let row = cells(&stats);
    assert_eq!(row.first().map(String::as_str), Some("loud"), "{stats}");
    assert_eq!(
        row.get(1).map(String::as_str),
        Some("1"),
        "one live instance: {stats}"
    );
    let (refused, processed) = refused_and_processed(&stats).unwrap_or_default();
    assert_eq!(processed - refused, 3, "three processed by loud: {stats}");
    assert!(
        !stats.contains("entry"),
        "only the worker asked for: {stats}"
    );
    let unknown = mesh.damrey(&["stats", "--worker", "nobody"]).await;
    assert_eq!(unknown.status.code(), Some(1));

    let agents = mesh
        .damrey_until(&["agents"], |out| out.contains("loud×1"))
        .await;
    assert!(
        agents.contains(&mesh.agent) && agents.contains("entry×1"),
        "{agents}"
    );

    let idle_alarm = |out: &str| {
        out.lines()
            .find(|line| line.contains("no_instance") && line.contains(" idle "))
            .map(str::to_owned)
    };
    let alarms = mesh
        .damrey_until(&["alarms"], |out| idle_alarm(out).is_some())
        .await;
    let alarm = idle_alarm(&alarms).unwrap_or_default();
    assert!(alarm.contains("active"), "{alarms}");
    // A call idle cannot take (no live instance) is refused, and shown as refused.
    let refused = mesh.damrey(&["call", "idle", "nap"]).await;
    assert!(!refused.status.success(), "{}", stdout(&refused));
    let idle = |out: &str| {
        out.lines()
            .find(|line| line.starts_with("idle"))
            .map(|line| {
                line.split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let stats = mesh
        .damrey_until(&["stats", "--worker", "idle"], |out| {
            idle(out)
                .iter()
                .rev()
                .nth(1)
                .is_some_and(|refused| refused == "1")
        })
        .await;
    assert_eq!(
        idle(&stats).last().map(String::as_str),
        Some("1"),
        "the refused call is processed: {stats}"
    );

    let watch = mesh
        .damrey_until(&["watch", "--count", "1", "--interval", "10"], |out| {
            out.contains("loud[1] 0.")
        })
        .await;
    assert!(watch.contains("nap    idle[0]"), "{watch}");
    let shout = watch
        .lines()
        .find(|line| line.starts_with("shout"))
        .unwrap_or_default();
    assert!(
        shout.contains("entry[1]") && shout.contains("=> loud[1]") && shout.ends_with('○'),
        "{watch}"
    );

    let json = mesh.damrey(&["watch", "--count", "1", "--json"]).await;
    let draw: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        draw["lines"][1]["workers"],
        serde_json::json!(["entry", "loud"])
    );
    assert_eq!(draw["lines"][1]["end"]["kind"], "reply");
    entry.stop().await;
    loud.stop().await;
}

/// A CA and a certificate for 127.0.0.1 it signed, written to `dir`: (ca, cert, key).
fn certificates(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("proxy.pem"),
        dir.join("proxy.key"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// A proxy serving HTTPS with `cert` and `key`, on SQLite in `dir`; its URL.
async fn https_proxy(dir: &std::path::Path, cert: PathBuf, key: PathBuf) -> String {
    let proxy = damrey_proxy::startup::Application::build(damrey_proxy::config::Settings {
        host: "127.0.0.1".into(),
        port: 0,
        sqlite_path: dir
            .join(format!("proxy-{}.db", next_number()))
            .display()
            .to_string(),
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..Default::default()
    })
    .await
    .expect("the proxy starts");
    let url = format!("https://127.0.0.1:{}", proxy.port());
    actix_web::rt::spawn(proxy.run_until_stopped());
    url
}

/// A name no other call of this process gets.
fn next_number() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Runs `damrey ARGS` with no mesh in its environment.
async fn damrey<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_damrey"));
    command.args(args).env_remove("DAMREY_TLS_CA");
    actix_web::rt::task::spawn_blocking(move || command.output().expect("damrey runs"))
        .await
        .unwrap()
}

#[actix_web::test]
async fn an_https_proxy_is_reached_with_the_mesh_s_ca() {
    let dir = fresh_dir("tls");
    let (ca, cert, key) = certificates(&dir);
    let url = https_proxy(&dir, cert, key).await;

    let trusted = damrey([
        "--proxy",
        &url,
        "--tls-ca",
        ca.to_str().unwrap(),
        "worker",
        "list",
    ])
    .await;
    let untrusted = damrey(["--proxy", &url, "worker", "list"]).await;

    assert!(trusted.status.success(), "{}", stderr(&trusted));
    assert_eq!(stdout(&trusted), "NAME  AGENT  MPU  COMMANDS\n");
    assert_eq!(untrusted.status.code(), Some(1));
    assert!(
        stderr(&untrusted).contains(&format!("no answer from {url}")),
        "{}",
        stderr(&untrusted)
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `openssl x509 -noout ARGS -in cert`'s output, or `None` without openssl.
fn openssl_x509(cert: &std::path::Path, args: &[&str]) -> Option<(bool, String)> {
    let output = Command::new("openssl")
        .arg("x509")
        .arg("-noout")
        .args(args)
        .arg("-in")
        .arg(cert)
        .output()
        .ok()?;
    Some((output.status.success(), stdout(&output)))
}

/// Whether a proxy serving `name`'s certificate from `dir` is reached by `damrey`
/// trusting `dir`'s CA.
async fn reached_with_the_ca(dir: &std::path::Path, name: &str) -> bool {
    let url = https_proxy(
        dir,
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
    .await;
    let ca = dir.join("ca.pem").display().to_string();
    let output = damrey(["--proxy", &url, "--tls-ca", &ca, "worker", "list"]).await;
    output.status.success()
}

#[actix_web::test]
async fn certs_makes_a_ca_once_and_certificates_that_name_their_holders() {
    use std::os::unix::fs::PermissionsExt;
    let dir = fresh_dir("certs").join("mesh");
    let path = dir.display().to_string();

    let first = damrey([
        "certs",
        &path,
        "proxy=127.0.0.1",
        "one=127.0.0.1:7701",
        "two=agent.example:7702",
    ])
    .await;
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let again = damrey(["certs", &path, "three=127.0.0.1"]).await;

    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        stdout(&first),
        format!(
            "{path}/ca.pem (new CA)\n\
             {path}/proxy.pem (IP:127.0.0.1)\n\
             {path}/one.pem (IP:127.0.0.1, URI:damrey-agent://127.0.0.1:7701)\n\
             {path}/two.pem (DNS:agent.example, URI:damrey-agent://agent.example:7702)\n"
        )
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        stdout(&again),
        format!("{path}/ca.pem (reused)\n{path}/three.pem (IP:127.0.0.1)\n")
    );
    assert_eq!(
        std::fs::read(dir.join("ca.pem")).unwrap(),
        ca,
        "the CA is kept"
    );
    for key in ["ca.key", "proxy.key", "one.key", "two.key", "three.key"] {
        let mode = std::fs::metadata(dir.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    // Real handshakes: the first run's certificate and one signed by the reused CA.
    assert!(reached_with_the_ca(&dir, "proxy").await);
    assert!(reached_with_the_ca(&dir, "three").await);

    let Some((_, names)) = openssl_x509(
        &dir.join("one.pem"),
        &["-ext", "subjectAltName,extendedKeyUsage,keyUsage"],
    ) else {
        println!("the subject alternative names are not checked: no openssl");
        return;
    };
    assert!(
        names.contains("IP Address:127.0.0.1, URI:damrey-agent://127.0.0.1:7701"),
        "{names}"
    );
    assert!(
        names.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{names}"
    );
    let (_, dns) = openssl_x509(&dir.join("two.pem"), &["-ext", "subjectAltName"]).unwrap();
    assert!(
        dns.contains("DNS:agent.example, URI:damrey-agent://agent.example:7702"),
        "{dns}"
    );
    let day = 24 * 60 * 60;
    let valid_for = |days: u64| {
        openssl_x509(
            &dir.join("one.pem"),
            &["-checkend", &(days * day).to_string()],
        )
        .unwrap()
        .0
    };
    assert!(valid_for(824), "valid for 825 days");
    assert!(!valid_for(826), "not longer");
    let (ok, _) = openssl_x509(
        &dir.join("ca.pem"),
        &["-checkend", &(824 * day).to_string()],
    )
    .unwrap();
    assert!(ok, "the CA is valid as long");
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}

#[actix_web::test]
async fn certs_says_what_is_wrong_with_its_arguments_or_its_directory() {
    let dir = fresh_dir("certs-bad");
    let file = dir.join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let path = dir.display().to_string();

    let no_holder = damrey(["certs", &path]).await;
    let no_host = damrey(["certs", &path, "one"]).await;
    let bad_port = damrey(["certs", &path, "one=127.0.0.1:99999"]).await;
    let unwritable = damrey([
        "certs",
        &format!("{}/certs", file.display()),
        "one=127.0.0.1",
    ])
    .await;

    assert_eq!(no_holder.status.code(), Some(2));
    assert!(
        stderr(&no_holder).contains("Usage: damrey certs <DIR> <NAME=HOST[:PORT]>..."),
        "{}",
        stderr(&no_holder)
    );
    assert_eq!(no_host.status.code(), Some(2));
    assert!(
        stderr(&no_host).contains("invalid value 'one'")
            && stderr(&no_host).contains("expected NAME=HOST or NAME=HOST:PORT"),
        "{}",
        stderr(&no_host)
    );
    assert_eq!(bad_port.status.code(), Some(2));
    assert!(
        stderr(&bad_port).contains("the port \"99999\" is not a number from 1 to 65535"),
        "{}",
        stderr(&bad_port)
    );
    assert_eq!(unwritable.status.code(), Some(1));
    assert_eq!(
        stderr(&unwritable),
        format!(
            "error: cannot create the directory {}/certs: Not a directory (os error 20)\n",
            file.display()
        )
    );
    assert!(!dir.join("ca.pem").exists());
    let _ = std::fs::remove_dir_all(dir);
}
