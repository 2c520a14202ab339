//! Each step's debug log, in a test process of its own: tracing caches, per callsite
//! and for the whole process, whether any subscriber wants it, and tests on other
//! threads with subscribers of their own change that cache under this one (the test
//! failed about one run in eight beside the other runtime tests).

use std::sync::Arc;

use damrey_actors::prelude::*;

// The runtime tests' workers; this test uses only the line's three.
#[allow(dead_code)]
#[path = "runtime/support.rs"]
mod support;

use support::{Add, Entry, Square, counter};

/// Log output kept in memory, for a subscriber set on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[actix::test]
async fn at_debug_each_step_logs_the_message_id_worker_and_type() {
    use tracing_subscriber::layer::SubscriberExt;
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("damrey_actors=debug"))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(captured.clone())
                .with_ansi(false),
        );
    let _guard = tracing::subscriber::set_default(subscriber);
    let mesh = TestMesh::new([
        WorkerSpec::new("entry").command("sqsum", "add"),
        WorkerSpec::new("add").command("sqsum", "square"),
        WorkerSpec::new("square").command("sqsum", ""),
    ])
    .unwrap();
    mesh.start("entry", || Entry(counter())).await.unwrap();
    mesh.start("add", || Add(counter())).await.unwrap();
    mesh.start("square", || Square(counter())).await.unwrap();

    let reply = mesh
        .request("entry", Message::request("sqsum", ["3", "4"]))
        .await;

    assert_eq!(reply, Message::response("sqsum", ["49"]));
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let steps: Vec<&str> = text.lines().filter(|l| l.contains("step done")).collect();
    assert_eq!(steps.len(), 3, "{text}");
    let id = |line: &str| {
        let start = line.find("message_id=").expect("a message id") + "message_id=".len();
        line[start..start + 36].to_owned()
    };
    assert!(
        steps.iter().all(|line| id(line) == id(steps[0])),
        "one id per line: {text}"
    );
    for (line, worker) in steps.iter().zip(["entry", "add", "square"]) {
        assert!(
            line.contains(&format!("worker={worker}")) && line.contains("kind=sqsum"),
            "{line}"
        );
    }
}
