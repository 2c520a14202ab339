//! Logging for every Damrey process: a `tracing` subscriber, `RUST_LOG` over a default of
//! `info`, text or JSON lines on stderr, colours only when stderr is a terminal; and
//! [`log_requests`], the request log of the HTTP servers; and [`error_chain`], how an
//! error and its causes are written in a log line.
//!
//! An idle mesh logs nothing at `info`: requests are logged at `debug` (heartbeats, long
//! polls, probes and scrapes are most of them) and at `warn` when they fail on the
//! server's side (5xx). Every request runs in a `request` span carrying its
//! [`REQUEST_ID`], so whatever a handler logs names the request it served.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::str::FromStr;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::{EnvFilter, fmt as layer};

/// The header that carries a request's id: taken from the request when it has one
/// (up to [`MAX_REQUEST_ID`] visible ASCII characters), else made up; always echoed on
/// the response.
pub const REQUEST_ID: &str = "x-request-id";

/// The longest request id taken from a client.
pub const MAX_REQUEST_ID: usize = 128;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// This format's name, as settings files, variables and flags write it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A log format name that is none of [`LogFormat::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log_format: {0:?} is not one of text, json")]
pub struct UnknownLogFormat(pub String);

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(UnknownLogFormat(other.to_owned())),
        }
    }
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for LogFormat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Installs the global subscriber.
///
/// # Errors
/// [`TryInitError`] when a global subscriber is installed already.
pub fn init(format: LogFormat) -> Result<(), TryInitError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let text = (format == LogFormat::Text)
        .then(|| layer::layer().with_writer(std::io::stderr).with_ansi(ansi));
    let json =
        (format == LogFormat::Json).then(|| layer::layer().json().with_writer(std::io::stderr));
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .try_init()
}

/// The id of a request: the client's [`REQUEST_ID`] when it is usable, else a fresh one.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= MAX_REQUEST_ID
                && id.bytes().all(|byte| byte.is_ascii_graphic())
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// Middleware: runs each request in a `request` span (its id), echoes its id in
/// [`REQUEST_ID`], and logs its method, path, status and duration — at `debug`, or
/// `warn` for a 5xx. Wrap it last (outermost), so that it sees every answer.
///
/// The span holds the id alone: the text layer formats a span's fields when the span
/// is made, for every request, and the method and path are only wanted on the line
/// that ends it.
///
/// # Errors
/// Whatever the inner service fails with (actix-web makes the response of such an
/// error after this middleware, so it goes without the id).
pub async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    let span = tracing::info_span!("request", request_id = %id);
    // Kept for the line that ends the request: a `Method` and a `Uri` (shared bytes)
    // clone with at most one small allocation and no copy of the path.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let result = next.call(req).instrument(span.clone()).await;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let _entered = span.enter();
    let status = match &result {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    let path = uri.path();
    if status.is_server_error() {
        tracing::warn!(
            %method,
            %path,
            status = status.as_u16(),
            elapsed_ms,
            "request failed"
        );
    } else {
        tracing::debug!(
            %method,
            %path,
            status = status.as_u16(),
            elapsed_ms,
            "request"
        );
    }
    let mut response = result?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), value);
    }
    Ok(response)
}

/// `error` and its causes, joined by `: `: how a failure that ends in a log line is
/// written, so that the line says what failed and why.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(chain, ": {cause}");
        source = cause.source();
    }
    chain
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use actix_web::middleware::from_fn;
    use actix_web::test as actix_test;
    use actix_web::{App, HttpResponse, web};
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[actix_web::test]
    async fn requests_log_at_debug_failures_at_warn_each_with_its_request_id() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new("info"))
            .with(
                layer::layer()
                    .with_writer(captured.clone())
                    .with_ansi(false),
            );
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = actix_test::init_service(
            App::new()
                .wrap(from_fn(log_requests))
                .route("/healthz", web::get().to(HttpResponse::Ok))
                .route(
                    "/broken",
                    web::get().to(|| async {
                        tracing::info!("inside the handler");
                        HttpResponse::BadGateway().finish()
                    }),
                ),
        )
        .await;

        let quiet = actix_test::call_service(
            &app,
            actix_test::TestRequest::get().uri("/healthz").to_request(),
        )
        .await;
        let generated = quiet.headers().get(REQUEST_ID).cloned();
        let idle = captured.text();
        let broken = actix_test::call_service(
            &app,
            actix_test::TestRequest::get()
                .uri("/broken")
                .insert_header((REQUEST_ID, "abc-123"))
                .to_request(),
        )
        .await;
        let logged = captured.text();

        assert_eq!(idle, "", "a 200 logs nothing at info");
        assert!(generated.is_some_and(|id| uuid::Uuid::parse_str(id.to_str().unwrap()).is_ok()));
        assert_eq!(broken.headers().get(REQUEST_ID).unwrap(), "abc-123");
        let lines: Vec<&str> = logged.lines().collect();
        assert_eq!(lines.len(), 2, "{logged}");
        assert!(
            lines.iter().all(|line| line.contains("request_id=abc-123")),
            "{logged}"
        );
        assert!(lines[0].contains("inside the handler"), "{logged}");
        assert!(
            lines[1].contains("WARN")
                && lines[1].contains("status=502")
                && lines[1].contains("method=GET")
                && lines[1].contains("path=/broken"),
            "{logged}"
        );
    }

    #[test]
    fn an_error_chain_names_every_cause_in_order() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading the config failed")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("disk gone"));
        assert_eq!(error_chain(&error), "reading the config failed: disk gone");
    }

    #[test]
    fn log_formats_parse_by_name_and_say_which_there_are() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!(
            "yaml".parse::<LogFormat>().unwrap_err().to_string(),
            r#"log_format: "yaml" is not one of text, json"#
        );
        for format in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(format.as_str().parse(), Ok(format));
        }
    }
}
