//! Talking to the proxy and the agent over HTTP.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use awc::http::StatusCode;
use awc::{Client, SendClientRequest};
use damrey_service::credential::Secret;
use rustls::ClientConfig;
use serde_json::Value;

/// The largest answer read (a big `/workers/stats`, a reply with a large argument).
const MAX_ANSWER: usize = 64 << 20;

/// An HTTP client that sends the bearer token, when there is one, with every request.
pub struct Api {
    client: Client,
    token: Option<Secret>,
}

/// What a service answered: the status and the body.
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body, as sent.
    pub body: Vec<u8>,
    /// The URL asked, for error messages.
    url: String,
}

impl Api {
    /// A client whose requests give up after `timeout`, trusting the CA of `tls` for
    /// `https://` URLs.
    pub fn new(token: Option<Secret>, timeout: Duration, tls: Option<&Arc<ClientConfig>>) -> Api {
        Api {
            client: damrey_service::tls::client(timeout, tls),
            token,
        }
    }

    /// `GET url`.
    ///
    /// # Errors
    /// Nothing answered at `url`.
    pub async fn get(&self, url: &str) -> anyhow::Result<Answer> {
        let mut request = self.client.get(url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        read(url, request.send()).await
    }

    /// `POST url` with a JSON body.
    ///
    /// # Errors
    /// Nothing answered at `url`.
    pub async fn post(&self, url: &str, json: String) -> anyhow::Result<Answer> {
        let mut request = self
            .client
            .post(url)
            .insert_header(("content-type", "application/json"));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        read(url, request.send_body(json)).await
    }
}

async fn read(url: &str, sending: SendClientRequest) -> anyhow::Result<Answer> {
    let mut response = sending
        .await
        .map_err(|error| anyhow!("no answer from {url}: {error}"))?;
    let body = response
        .body()
        .limit(MAX_ANSWER)
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    Ok(Answer {
        status: response.status(),
        body: body.to_vec(),
        url: url.to_owned(),
    })
}

impl Answer {
    /// The body as JSON, when the status is a success.
    ///
    /// # Errors
    /// The status is not a success (the message says the service's `error`), or the body
    /// is not JSON.
    pub fn json(self) -> anyhow::Result<Value> {
        if !self.status.is_success() {
            return Err(self.failure());
        }
        serde_json::from_slice(&self.body)
            .with_context(|| format!("{} answered something that is not JSON", self.url))
    }

    /// The error this answer stands for: the status and the service's own words.
    pub fn failure(&self) -> anyhow::Error {
        let said = serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|body| body.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().to_owned());
        anyhow!("{} answered {}: {said}", self.url, self.status)
    }
}

/// The base URL of a service given as `host:port` or as a URL.
pub fn base_url(address: &str) -> String {
    if address.contains("://") {
        address.trim_end_matches('/').to_owned()
    } else {
        format!("http://{address}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_becomes_a_base_url() {
        assert_eq!(base_url("127.0.0.1:7700"), "http://127.0.0.1:7700");
        assert_eq!(
            base_url("https://proxy.example:7700/"),
            "https://proxy.example:7700"
        );
    }

    #[test]
    fn a_failure_carries_the_service_s_own_words() {
        let answer = Answer {
            status: StatusCode::NOT_FOUND,
            body: br#"{"error":"no worker named \"x\""}"#.to_vec(),
            url: "http://p/workers/x".to_owned(),
        };
        assert_eq!(
            answer.failure().to_string(),
            r#"http://p/workers/x answered 404 Not Found: no worker named "x""#
        );
    }
}
