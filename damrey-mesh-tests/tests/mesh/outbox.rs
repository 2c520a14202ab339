//! A worker process's own requests and pushes across a lost connection: resent with
//! the same id (`Config::retries`), kept once by the agent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Context, Handler};
use actix_http::ws;
use actix_web::{HttpRequest, web};
use damrey_actors::{Config, Message, Worker};
use damrey_wire::frame::Frame;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use uuid::Uuid;

use crate::support::{Agent, Proxy, TempDir, serve_get, sqsum};

/// A worker that answers what it is given; only its outbox matters here.
struct Echo;
impl Actor for Echo {
    type Context = Context<Self>;
}
impl Handler<Message> for Echo {
    type Result = Message;
    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        msg
    }
}

/// An agent that welcomes a worker, records the outbox frames it receives, and drops
/// the first connection without answering; on later connections it answers requests
/// `RESPONSE done` and acknowledges pushes.
struct FlakyAgent {
    address: String,
    /// (connection number, frame) for every request and push received.
    seen: Arc<Mutex<Vec<(usize, Frame)>>>,
}

impl FlakyAgent {
    fn start() -> FlakyAgent {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0usize));
        let recorded = seen.clone();
        let address = serve_get(
            "/attach/{worker}",
            move |req: HttpRequest, body: web::Payload| {
                let (recorded, connections) = (recorded.clone(), connections.clone());
                async move {
                    let (response, mut session, mut stream) = actix_ws::handle(&req, body)?;
                    let connection = {
                        let mut count = connections.lock().unwrap();
                        *count += 1;
                        *count
                    };
                    actix_rt::spawn(async move {
                        let welcome = serde_json::to_string(&Frame::Welcome {
                            mpu: 0,
                            run: Uuid::from_u128(1),
                        })
                        .unwrap();
                        let _ = session.text(welcome).await;
                        while let Some(Ok(actix_ws::Message::Text(text))) = stream.recv().await {
                            let Ok(frame) = serde_json::from_str::<Frame>(&text) else {
                                continue;
                            };
                            let answer = match &frame {
                                Frame::Request { id, .. } => Some(Frame::Reply {
                                    id: *id,
                                    msg: Message::response("t", ["done"]),
                                    fault: None,
                                }),
                                Frame::Push { id, .. } => Some(Frame::Pushed { id: *id }),
                                _ => None,
                            };
                            let Some(answer) = answer else { continue };
                            recorded.lock().unwrap().push((connection, frame));
                            if connection == 1 {
                                if recorded.lock().unwrap().len() == 2 {
                                    let _ = session.close(None).await;
                                    return;
                                }
                            } else {
                                let _ = session.text(serde_json::to_string(&answer).unwrap()).await;
                            }
                        }
                    });
                    Ok::<_, actix_web::Error>(response)
                }
            },
        );
        FlakyAgent { address, seen }
    }
}

fn outbox_id(frame: &Frame) -> Uuid {
    match frame {
        Frame::Request { id, .. } | Frame::Push { id, .. } => *id,
        other => panic!("not an outbox frame: {other:?}"),
    }
}

#[actix_rt::test]
async fn a_workers_request_and_push_are_resent_with_their_ids_over_a_new_connection() {
    let agent = FlakyAgent::start();
    let config = Config {
        retries: 2,
        ..Config::named("client")
    };
    let worker = Worker::new(config)
        .agent(agent.address.clone())
        .start(|| Echo)
        .await
        .unwrap();

    worker.push(Message::request("t", ["p"])).await.unwrap();
    let reply = worker
        .request(Message::request("t", ["r"]), Duration::from_secs(5))
        .await;

    assert_eq!(reply, Message::response("t", ["done"]));
    let seen = agent.seen.lock().unwrap().clone();
    let first: Vec<Uuid> = seen
        .iter()
        .filter(|(c, _)| *c == 1)
        .map(|(_, f)| outbox_id(f))
        .collect();
    let again: Vec<Uuid> = seen
        .iter()
        .filter(|(c, _)| *c > 1)
        .map(|(_, f)| outbox_id(f))
        .collect();
    assert_eq!(first.len(), 2, "{seen:?}");
    for id in &first {
        assert!(again.contains(id), "{id} was not resent: {seen:?}");
    }
}

#[actix_rt::test]
async fn a_request_resent_over_a_new_connection_runs_its_line_once_and_is_answered_there() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(
        &dir,
        [
            json!({"name": "client", "commands": [{"name": "sqsum", "worker": "add"}]}),
            json!({"name": "add", "commands": [{"name": "sqsum", "worker": "square"}]}),
            json!({"name": "square", "commands": [{"name": "sqsum", "worker": ""}]}),
        ],
    )
    .await;
    let agent = Agent::ready(&proxy).await;
    let _workers = [agent.worker("add", "add"), agent.worker("square", "square")];
    agent.wait_instances(2).await;
    let request = Frame::Request {
        id: Uuid::new_v4(),
        ms: 5_000,
        msg: sqsum(3, 4),
        to: None,
    };

    // The first connection sends the request and goes away before any reply.
    let mut first = attach(&agent.address).await;
    first
        .send(ws::Message::Text(
            serde_json::to_string(&request).unwrap().into(),
        ))
        .await
        .unwrap();
    first.close().await.unwrap();
    drop(first);
    let mut second = attach(&agent.address).await;
    second
        .send(ws::Message::Text(
            serde_json::to_string(&request).unwrap().into(),
        ))
        .await
        .unwrap();
    let reply = loop {
        match second.next().await {
            Some(Ok(ws::Frame::Text(text))) => match serde_json::from_slice::<Frame>(&text) {
                Ok(Frame::Reply { id, msg, .. }) => break (id, msg),
                _ => continue,
            },
            Some(Ok(_)) => continue,
            other => panic!("the connection ended: {other:?}"),
        }
    };

    let Frame::Request { id, .. } = request else {
        unreachable!()
    };
    assert_eq!(reply, (id, Message::response("sqsum", ["49"])));
    assert_eq!(
        agent.stats_sum("received").await,
        2,
        "add and square ran once each"
    );
}

#[actix_rt::test]
async fn a_reply_too_large_for_a_json_worker_is_answered_as_such_and_the_link_stays_up() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(
        &dir,
        [
            json!({"name": "client", "commands": [{"name": "nap", "worker": "nap"}]}),
            json!({"name": "nap", "commands": [{"name": "nap"}]}),
        ],
    )
    .await;
    let agent = Agent::ready(&proxy).await;
    let _nap = agent.worker("nap", "nap");
    agent.wait_instances(1).await;
    // A client that offers no binary frames, as a build from before them: it gets JSON,
    // and reads frames of up to 1 MiB.
    let mut client = attach(&agent.address).await;
    let request = |id: Uuid, arg: &str| Frame::Request {
        id,
        ms: 5_000,
        msg: Message::request("nap", ["0", arg]),
        to: None,
    };
    // 600,000 quotes: 0.6 MB in a binary frame, 1.2 MB escaped in a JSON one.
    let quotes = "\"".repeat(600_000);
    let (big, small) = (Uuid::new_v4(), Uuid::new_v4());

    for frame in [request(big, &quotes), request(small, "after")] {
        let text = serde_json::to_string(&frame).unwrap();
        client.send(ws::Message::Text(text.into())).await.unwrap();
    }
    let mut replies = Vec::new();
    while replies.len() < 2 {
        match client.next().await {
            Some(Ok(ws::Frame::Text(text))) => {
                if let Ok(Frame::Reply { id, msg, .. }) = serde_json::from_slice(&text) {
                    replies.push((id, msg));
                }
            }
            Some(Ok(_)) => {}
            other => panic!("the link ended: {other:?}"),
        }
    }

    let reply = |id| replies.iter().find(|(of, _)| *of == id).map(|(_, msg)| msg);
    let too_large = reply(big).expect("the large request is answered");
    assert_eq!(too_large.tag, damrey_actors::Tag::Error, "{too_large}");
    assert!(
        too_large.args[0].contains("over the 1048576-byte frame limit"),
        "{too_large}"
    );
    assert_eq!(
        reply(small),
        Some(&Message::response("nap", ["0", "after"]))
    );
}

/// Attaches to the agent at `address` as worker `client`, past its welcome.
async fn attach(address: &str) -> damrey_actors::link::ClientSocket {
    let (_, mut socket) = awc::Client::new()
        .ws(format!("ws://{address}/attach/client"))
        .max_frame_size(damrey_wire::binary::MAX_JSON_FRAME)
        .connect()
        .await
        .expect("the agent takes the worker");
    match socket.next().await {
        Some(Ok(ws::Frame::Text(text))) => assert!(matches!(
            serde_json::from_slice::<Frame>(&text),
            Ok(Frame::Welcome { .. })
        )),
        other => panic!("no welcome: {other:?}"),
    }
    socket
}
