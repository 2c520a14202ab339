//! The alarm webhook: POSTs `{"event":"fire"|"resolve","alarm":{...}}` for each
//! transition this proxy made, in order, from a bounded queue so that the evaluator
//! never waits; each post is retried with doubling, jittered backoff.

use std::time::Duration;

use damrey_service::backoff::Backoff;
use damrey_service::telemetry::error_chain;
use tokio::sync::mpsc;

use crate::alarm::Transition;

/// How many transitions may wait for the webhook; more are dropped and logged.
pub const QUEUE_CAPACITY: usize = 1_024;

/// How a post is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The waits between attempts: 200 ms to 400 ms after the first failure, doubling.
    pub backoff: Backoff,
    /// The longest one attempt may take.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
            timeout: Duration::from_secs(5),
        }
    }
}

/// A webhook post that failed. awc's cause is neither `Send` nor `Sync`; the error
/// stays on the webhook's task, where it is logged.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The request could not be sent or got no answer.
    #[error("posting to the webhook failed")]
    Send(#[source] awc::error::SendRequestError),
    /// The receiver answered with a status other than 2xx.
    #[error("the webhook answered {0}")]
    Status(u16),
}

/// The sending end of the webhook's queue.
#[derive(Debug, Clone)]
pub struct Webhook {
    queue: mpsc::Sender<Transition>,
}

impl Webhook {
    /// Starts the task that posts to `url`; it must be called on an actix system (awc's
    /// client lives on the current thread). The task ends when every `Webhook` is dropped.
    pub fn start(url: String, policy: RetryPolicy) -> Webhook {
        let (queue, mut transitions) = mpsc::channel::<Transition>(QUEUE_CAPACITY);
        actix_web::rt::spawn(async move {
            let client = awc::Client::builder().timeout(policy.timeout).finish();
            while let Some(transition) = transitions.recv().await {
                deliver(&client, &url, &policy, &transition).await;
            }
        });
        Webhook { queue }
    }

    /// Queues `transition` without waiting; when the queue is full it is dropped and logged.
    pub fn send(&self, transition: Transition) {
        if let Err(error) = self.queue.try_send(transition) {
            let transition = match &error {
                mpsc::error::TrySendError::Full(t) | mpsc::error::TrySendError::Closed(t) => t,
            };
            tracing::error!(
                alarm = transition.alarm.id,
                event = ?transition.event,
                "webhook queue full or closed; transition not posted"
            );
        }
    }
}

/// Posts `transition` until it is accepted or the attempts run out.
async fn deliver(client: &awc::Client, url: &str, policy: &RetryPolicy, transition: &Transition) {
    let mut backoff = policy.backoff;
    for attempt in 1..=policy.attempts.max(1) {
        match post(client, url, transition).await {
            Ok(()) => return,
            Err(error) if attempt < policy.attempts => {
                tracing::debug!(attempt, error = %error_chain(&error), "webhook post failed; retrying");
                backoff.pause().await;
            }
            Err(error) => {
                tracing::warn!(
                    attempt,
                    alarm = transition.alarm.id,
                    error = %error_chain(&error),
                    "webhook post failed; giving up"
                );
            }
        }
    }
}

async fn post(
    client: &awc::Client,
    url: &str,
    transition: &Transition,
) -> Result<(), WebhookError> {
    let mut response = client
        .post(url)
        .send_json(transition)
        .await
        .map_err(WebhookError::Send)?;
    // Read the body so that the connection can be reused.
    let _ = response.body().await;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(WebhookError::Status(response.status().as_u16()))
    }
}
