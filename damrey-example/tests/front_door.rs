//! The front door's statuses: 400 for a request it cannot read, 422 for a handler's
//! `ERROR` about the request's data, 502/503 for an `ERROR` the mesh made (named in the
//! `damrey-fault` header); and each request that reaches the mesh runs entry's own step.
//! The proxy and agent run in this test from their libraries, `entry` and `add` attach
//! to the agent over its link; `square` never starts.

use actix_web::test::{TestRequest, call_service, init_service, read_body};
use actix_web::{App, dev::ServiceResponse};
use damrey_actors::{Config, Worker};
use damrey_example::{Add, Entry, front, line_specs};
use in_process::agent_with;

mod in_process;

async fn answer(response: ServiceResponse) -> (u16, Option<String>, String) {
    let status = response.status().as_u16();
    let fault = response
        .headers()
        .get("damrey-fault")
        .map(|value| value.to_str().unwrap().to_owned());
    let body = String::from_utf8(read_body(response).await.to_vec()).unwrap();
    (status, fault, body)
}

#[actix_web::test]
async fn each_failure_gets_the_status_of_whose_fault_it_is() {
    let agent = agent_with(&line_specs()).await;
    let entry = Worker::new(Config::named("entry"))
        .agent(agent.clone())
        .start(|| Entry)
        .await
        .expect("entry attaches");
    let _add = Worker::new(Config::named("add"))
        .agent(agent.clone())
        .start(|| Add)
        .await
        .expect("add attaches");
    let app = init_service(App::new().configure(front::configure(entry))).await;
    let get = |uri: &str| TestRequest::get().uri(uri).to_request();
    let post = |body: &'static str| {
        TestRequest::post()
            .uri("/?timeout_ms=30000")
            .set_payload(body)
            .to_request()
    };

    let malformed = answer(call_service(&app, get("/sqsum?a=3&b=x")).await).await;
    let missing = answer(call_service(&app, get("/sqsum?a=3")).await).await;
    let not_a_message = answer(call_service(&app, post(r#"["HELLO"]"#)).await).await;
    let overflow = answer(
        call_service(
            &app,
            get("/sqsum?a=9223372036854775807&b=1&timeout_ms=30000"),
        )
        .await,
    )
    .await;
    let unknown_type = answer(call_service(&app, post(r#"["REQUEST","cube","2"]"#)).await).await;
    let no_square = answer(call_service(&app, get("/sqsum?a=3&b=4&timeout_ms=30000")).await).await;

    assert_eq!(malformed, (400, None, "\"x\" is not an integer".to_owned()));
    assert_eq!(missing.0, 400, "{missing:?}");
    assert_eq!(not_a_message.0, 400, "{not_a_message:?}");
    assert_eq!(
        overflow,
        (422, None, "9223372036854775807 + 1 overflows".to_owned()),
        "the handler's ERROR about the request's data"
    );
    assert_eq!(
        (unknown_type.0, unknown_type.1.as_deref()),
        (502, Some("config")),
        "{unknown_type:?}"
    );
    assert_eq!(
        no_square,
        (
            503,
            Some("no_instance".to_owned()),
            "worker square has no live instance".to_owned()
        )
    );
    // The two requests that reached the mesh ran entry's own step (the line starts at
    // entry), so the agent counted them for entry.
    let metrics = awc::Client::default()
        .get(format!("http://{agent}/metrics"))
        .send()
        .await
        .expect("the agent answers")
        .body()
        .await
        .unwrap();
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    let entry_steps: u64 = metrics
        .lines()
        .filter(|line| line.starts_with("damrey_steps_received_total{worker=\"entry\","))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(entry_steps, 2, "{metrics}");
}
