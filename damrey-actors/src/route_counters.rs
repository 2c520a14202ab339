//! What the router counts per worker, beside what instances count: the events of
//! routing itself, which outlive any one instance — steps run again after their
//! instance vanished or stopped, hand-off attempts that failed, and requests refused.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// The routing events of one worker, counted as they happen (relaxed atomics).
#[derive(Debug, Default)]
pub struct RouteCounters {
    rerouted: AtomicU64,
    handoff_retries: AtomicU64,
    rejected_type: AtomicU64,
    rejected_no_instance: AtomicU64,
    rejected_overloaded: AtomicU64,
    ejections: AtomicU64,
}

/// Why the router refused a step of a configured worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The worker does not accept the message's type.
    UnknownType,
    /// The worker had no live instance (after any wait for one).
    NoInstance,
    /// Every instance's queue was full, or would not start the step before its deadline.
    Overloaded,
}

/// A snapshot of [`RouteCounters`], as `/stats` and `/metrics` show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteCounts {
    /// Steps run again on another instance after theirs vanished or stopped first.
    pub rerouted: u64,
    /// Hand-offs to another agent that failed and were resent (or sent elsewhere).
    pub handoff_retries: u64,
    /// Steps refused because the worker does not accept their type.
    pub rejected_type: u64,
    /// Steps refused because the worker had no live instance.
    pub rejected_no_instance: u64,
    /// Steps refused at once because no instance could start them before their deadline.
    #[serde(default)]
    pub rejected_overloaded: u64,
    /// Instances taken out of the rotation for failing (each ejection counts).
    #[serde(default)]
    pub ejections: u64,
}

impl RouteCounters {
    /// A step is run again elsewhere.
    pub fn rerouted(&self) {
        self.rerouted.fetch_add(1, Ordering::Relaxed);
    }

    /// A hand-off attempt failed.
    pub fn handoff_retry(&self) {
        self.handoff_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// A step was refused.
    pub fn rejected(&self, why: Rejection) {
        let counter = match why {
            Rejection::UnknownType => &self.rejected_type,
            Rejection::NoInstance => &self.rejected_no_instance,
            Rejection::Overloaded => &self.rejected_overloaded,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// An instance was ejected for failing.
    pub fn ejected(&self) {
        self.ejections.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn counts(&self) -> RouteCounts {
        RouteCounts {
            rerouted: self.rerouted.load(Ordering::Relaxed),
            handoff_retries: self.handoff_retries.load(Ordering::Relaxed),
            rejected_type: self.rejected_type.load(Ordering::Relaxed),
            rejected_no_instance: self.rejected_no_instance.load(Ordering::Relaxed),
            rejected_overloaded: self.rejected_overloaded.load(Ordering::Relaxed),
            ejections: self.ejections.load(Ordering::Relaxed),
        }
    }
}

impl RouteCounts {
    /// Every count with its Prometheus metric name and help text, in one place for
    /// `/metrics`.
    pub fn metrics(&self) -> [(&'static str, &'static str, u64); 6] {
        [
            (
                "damrey_route_rerouted_total",
                "Steps run again on another instance after theirs vanished or stopped first.",
                self.rerouted,
            ),
            (
                "damrey_route_handoff_retries_total",
                "Hand-offs to another agent that failed and were resent or sent elsewhere.",
                self.handoff_retries,
            ),
            (
                "damrey_route_rejected_type_total",
                "Steps refused because the worker does not accept their type.",
                self.rejected_type,
            ),
            (
                "damrey_route_rejected_no_instance_total",
                "Steps refused because the worker had no live instance.",
                self.rejected_no_instance,
            ),
            (
                "damrey_route_rejected_overloaded_total",
                "Steps refused at once because no instance could start them before their deadline.",
                self.rejected_overloaded,
            ),
            (
                "damrey_route_ejections_total",
                "Instances taken out of the rotation for failing.",
                self.ejections,
            ),
        ]
    }
}
