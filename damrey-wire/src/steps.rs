//! The step counters, declared once: the table at the end of this file, and what follows
//! from it — the report an agent sends for each instance ([`InstanceReport`]), the
//! counters the proxy subtracts and sums ([`Counters`]), the agent's atomics
//! ([`Tally`]), and each counter's name, kind and metric families ([`STEPS`]), from which
//! the proxy's stored columns ([`InstanceReport::COUNTERS`]) and the one Prometheus
//! writer ([`crate::prometheus`]) are made. Beside them, a second, smaller table: the
//! routing counters each agent's router keeps per worker ([`Routing`], [`ROUTING`]).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::latency::Latency;

/// How a step counter behaves when reports are compared and instances summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Cumulative since the instance attached: a window is the difference of two reports,
    /// a worker's value the sum of its instances', and a value lower than before means
    /// the instance's agent restarted.
    Counter,
    /// A level now: a window keeps the latest value, a worker's is the sum of its
    /// instances', and an instance no longer live has none (0).
    Gauge,
    /// As [`Kind::Gauge`], but a worker's value is its instances' largest.
    GaugeMax,
}

impl Kind {
    /// The Prometheus `TYPE` of its families.
    pub fn prometheus_type(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge | Kind::GaugeMax => "gauge",
        }
    }

    /// Whether it is a level rather than a count.
    pub fn is_gauge(self) -> bool {
        !matches!(self, Kind::Counter)
    }

    /// What happened between `then` and `now`: the difference of a counter, the latest
    /// value of a gauge.
    fn since(self, now: u64, then: u64) -> u64 {
        match self {
            Kind::Counter => now.saturating_sub(then),
            Kind::Gauge | Kind::GaugeMax => now,
        }
    }

    /// Two instances' values as one worker's.
    fn combine(self, one: u64, other: u64) -> u64 {
        match self {
            Kind::Counter | Kind::Gauge => one.saturating_add(other),
            Kind::GaugeMax => one.max(other),
        }
    }

    /// Whether going from `then` to `now` means the instance's agent restarted.
    fn dropped(self, now: u64, then: u64) -> bool {
        self == Kind::Counter && now < then
    }
}

/// A Prometheus metric family: its name and `HELP` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// The metric's name.
    pub name: &'static str,
    /// Its `HELP` text.
    pub help: &'static str,
}

/// One step counter as the table declares it.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Its name: the field of [`InstanceReport`], [`Counters`] and [`Tally`], the JSON
    /// key, and the stored column.
    pub name: &'static str,
    /// How it behaves.
    pub kind: Kind,
    /// Its family in the agent's `/metrics` (a series per instance); `None` when the
    /// agent does not expose it.
    pub instance: Option<Family>,
    /// Its family in the proxy's `/metrics` (a series per worker).
    pub worker: Family,
    /// Reads it from a [`Counters`].
    pub value: fn(&Counters) -> u64,
}

/// Makes the step counters' types from the table below; see the table for its columns.
///
/// Besides the rows, it needs only the hand-written `InstanceReport` method of each
/// `derived` counter's name.
macro_rules! steps {
    // The report's fields, sorted out of the rows: `required` ones before `latency`,
    // `optional` ones after it, `none` left out.
    (@report [$($required:tt)*] [$($optional:tt)*]
        [$(#[$doc:meta])* $field:ident required] $($rest:tt)*) => {
        steps!(@report [$($required)* $(#[$doc])* $field] [$($optional)*] $($rest)*);
    };
    (@report [$($required:tt)*] [$($optional:tt)*]
        [$(#[$doc:meta])* $field:ident optional] $($rest:tt)*) => {
        steps!(@report [$($required)*] [$($optional)* $(#[$doc])* $field] $($rest)*);
    };
    (@report [$($required:tt)*] [$($optional:tt)*]
        [$(#[$doc:meta])* $field:ident none] $($rest:tt)*) => {
        steps!(@report [$($required)*] [$($optional)*] $($rest)*);
    };
    (@report [$($(#[$rdoc:meta])* $rfield:ident)*] [$($(#[$odoc:meta])* $ofield:ident)*]) => {
        /// One attached instance's counters since it attached, as the heartbeat carries
        /// them: `{"worker":"add","instance":1,"received":3,...,"latency":{...}}`.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(deny_unknown_fields)]
        pub struct InstanceReport {
            /// The worker's name.
            pub worker: String,
            /// The instance's number on its agent (unique per agent run).
            pub instance: u64,
            $($(#[$rdoc])* pub $rfield: u64,)*
            /// How long answered steps took, delivery to answer.
            pub latency: Latency,
            $($(#[$odoc])* #[serde(default)] pub $ofield: u64,)*
        }

        impl InstanceReport {
            /// The counters a report carries, which the proxy stores one column each, in
            /// the order of [`InstanceReport::counts`].
            pub const COUNTERS: &[&str] = &[$(stringify!($rfield),)* $(stringify!($ofield),)*];

            /// A report of `instance` of `worker` with `latency` and every counter 0.
            pub fn new(worker: String, instance: u64, latency: Latency) -> Self {
                InstanceReport {
                    worker,
                    instance,
                    latency,
                    $($rfield: 0,)*
                    $($ofield: 0,)*
                }
            }

            /// Each counter the report carries, with its name.
            pub fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($rfield), self.$rfield),)* $((stringify!($ofield), self.$ofield),)*]
                    .into_iter()
            }

            /// Each counter the report carries, with its name, to fill in.
            pub fn counts_mut(&mut self) -> impl Iterator<Item = (&'static str, &mut u64)> {
                [
                    $((stringify!($rfield), &mut self.$rfield),)*
                    $((stringify!($ofield), &mut self.$ofield),)*
                ]
                .into_iter()
            }
        }
    };

    // The agent's atomics: the rows whose source is `tally`.
    (@tally [$($tallied:tt)*] [$(#[$doc:meta])* $field:ident tally] $($rest:tt)*) => {
        steps!(@tally [$($tallied)* $(#[$doc])* $field] $($rest)*);
    };
    (@tally [$($tallied:tt)*] [$(#[$doc:meta])* $field:ident $source:ident] $($rest:tt)*) => {
        steps!(@tally [$($tallied)*] $($rest)*);
    };
    (@tally [$($(#[$doc:meta])* $field:ident)*]) => {
        /// The counters the agent counts itself for one instance, one atomic each (the
        /// `tally` rows of the table); counting a step is a relaxed addition.
        #[derive(Debug, Default)]
        pub struct Tally {
            $($(#[$doc])* pub $field: AtomicU64,)*
        }

        impl Tally {
            /// Copies the counts as they are now into `report`.
            pub fn load_into(&self, report: &mut InstanceReport) {
                $(report.$field = self.$field.load(Ordering::Relaxed);)*
            }
        }
    };

    (@family -) => { None };
    (@family ($name:literal, $help:literal)) => { Some(Family { name: $name, help: $help }) };

    (@of $report:ident derived $field:ident) => { $report.$field() };
    (@of $report:ident $source:ident $field:ident) => { $report.$field };

    ($(#![doc = $table_doc:literal])*
    $(
        $(#[doc = $doc:literal])*
        $field:ident: $kind:ident, $source:ident, $report:ident,
            instance: $instance:tt,
            worker: ($worker:literal, $worker_help:literal);
    )*) => {
        $(#[doc = $table_doc])*
        pub const STEPS: &[Step] = &[$(
            Step {
                name: stringify!($field),
                kind: Kind::$kind,
                instance: steps!(@family $instance),
                worker: Family { name: $worker, help: $worker_help },
                value: |counters| counters.$field,
            },
        )*];

        /// Step counters, every one of the table: cumulative in a report's totals, or
        /// what happened within a window.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub struct Counters {
            $($(#[doc = $doc])* pub $field: u64,)*
        }

        impl Counters {
            /// The counters of one instance's report.
            pub fn of(report: &InstanceReport) -> Counters {
                Counters {
                    $($field: steps!(@of report $source $field),)*
                }
            }

            /// Whether a counter is lower than in `earlier` (its agent restarted).
            pub fn dropped_since(&self, earlier: &Counters) -> bool {
                [$(Kind::$kind.dropped(self.$field, earlier.$field),)*].contains(&true)
            }

            /// What happened after `earlier`; the gauges stay the latest values.
            pub fn minus(&self, earlier: &Counters) -> Counters {
                Counters {
                    $($field: Kind::$kind.since(self.$field, earlier.$field),)*
                }
            }

            /// Adds `other`'s counts to these (to sum instances of one worker).
            pub fn add(&mut self, other: &Counters) {
                $(self.$field = Kind::$kind.combine(self.$field, other.$field);)*
            }

            /// Sets the gauges to 0: an instance no longer live has nothing in flight.
            pub fn clear_gauges(&mut self) {
                $(if Kind::$kind.is_gauge() {
                    self.$field = 0;
                })*
            }
        }

        steps!(@report [] [] $([$(#[doc = $doc])* $field $report])*);
        steps!(@tally [] $([$(#[doc = $doc])* $field $source])*);
    };
}

impl InstanceReport {
    /// Steps answered, whatever the answer; `u64::MAX` when the sum overflows (the proxy
    /// refuses a report whose sums do not fit).
    pub fn processed(&self) -> u64 {
        self.answers().into_iter().fold(0, u64::saturating_add)
    }

    /// The counters of the four answers (`RESPONSE`, `ERROR`, `TIMEOUT`, `STOP`), whose
    /// sum is `processed`.
    pub fn answers(&self) -> [u64; 4] {
        [self.responses, self.errors, self.timeouts, self.stops]
    }
}

steps! {
    //! Every step counter, in the order of the table (and of the metric families).
    //!
    //! Each row: the counter's doc, then
    //! `name: kind, source, report, instance: family, worker: family;` where
    //! - kind is a [`Kind`];
    //! - source says who counts it: `tally` (the agent, in an atomic of [`Tally`]), `router`
    //!   (the agent reads it from its router's view of the instance), or `derived` (nobody:
    //!   the `InstanceReport` method of its name makes it from the others);
    //! - report says where the heartbeat carries it: `required` (before `latency`, in every
    //!   report since the first), `optional` (after `latency`, `0` when an older agent leaves
    //!   it out), or `none` (not carried nor stored: a `derived` counter);
    //! - instance is its family in the agent's `/metrics` as `("name", "help")`, or `-` when
    //!   the agent does not expose it; worker is its family in the proxy's `/metrics`.
    //!
    //! Adding a step counter takes:
    //! 1. a row here: `optional` in the report (agents already running do not send it), at
    //!    the place its metric families should take in `/metrics`;
    //! 2. a migration (`migrations/sqlite` and `migrations/postgres`) adding its column to
    //!    `instance_samples`, `BIGINT NOT NULL DEFAULT 0` (the store's tests check that every
    //!    reported counter has its column);
    //! 3. the code that counts it: for a `tally` counter, the agent's
    //!    `stats.tally.<name>.fetch_add(..)` where the step happens; for a `router` one, the
    //!    line that fills it in `damrey-agent`'s `InstanceStats::report`.
    //!
    //! The report's field and JSON key, the proxy's sums, windows, stored column and read-back,
    //! and both `/metrics` pages follow from the row.
    /// Steps delivered.
    received: Counter, tally, required,
        instance: ("damrey_steps_received_total", "Steps delivered to a worker instance."),
        worker: ("damrey_worker_steps_received_total", "Steps delivered to the worker's instances.");
    /// Steps answered, whatever the answer.
    processed: Counter, derived, none,
        instance: ("damrey_steps_processed_total", "Steps a worker instance answered."),
        worker: (
            "damrey_worker_steps_processed_total",
            "Steps the worker's instances answered, whatever the answer, and steps its agents' routers refused."
        );
    /// Steps answered `RESPONSE` (or a `REQUEST` going on down the line).
    responses: Counter, tally, required,
        instance: (
            "damrey_steps_responses_total",
            "Steps answered RESPONSE (or REQUEST on down the line)."
        ),
        worker: ("damrey_worker_steps_responses_total", "Steps answered RESPONSE.");
    /// Steps answered `ERROR`.
    errors: Counter, tally, required,
        instance: ("damrey_steps_errors_total", "Steps answered ERROR."),
        worker: (
            "damrey_worker_steps_errors_total",
            "Steps answered ERROR, by the worker's instances or by its agents' routers refusing them."
        );
    /// Steps out of time (past their deadline or the worker's timeout).
    timeouts: Counter, tally, required,
        instance: ("damrey_steps_timeouts_total", "Steps that ran out of time."),
        worker: ("damrey_worker_steps_timeouts_total", "Steps that ran out of time.");
    /// Steps answered `STOP`.
    stops: Counter, tally, required,
        instance: ("damrey_steps_stops_total", "Steps answered STOP."),
        worker: ("damrey_worker_steps_stops_total", "Steps answered STOP.");
    /// Steps lost with the instance and retried elsewhere.
    retries: Counter, tally, required,
        instance: (
            "damrey_steps_retries_total",
            "Steps lost with their instance and retried elsewhere."
        ),
        worker: (
            "damrey_worker_steps_retries_total",
            "Steps retried elsewhere after their instance was lost."
        );
    /// Restarts of the worker's actor after panics (as its process reports them).
    restarts: Counter, tally, required,
        instance: (
            "damrey_instance_restarts_total",
            "Times the worker instance restarted its actor after a panic."
        ),
        worker: ("damrey_worker_restarts_total", "Restarts of the worker's actors after panics.");
    /// Steps delivered and not answered yet.
    in_flight: Gauge, tally, required,
        instance: ("damrey_steps_in_flight", "Steps delivered and not answered yet."),
        worker: ("damrey_worker_steps_in_flight", "Steps delivered and not answered yet.");
    /// Times the agent ejected the instance from its rotation for failing.
    ejections: Counter, router, optional,
        instance: -,
        worker: (
            "damrey_worker_ejections_total",
            "Times an agent ejected one of the worker's instances from its rotation for failing."
        );
    /// How long the instance has been out of full rotation for failing (ejected or on
    /// probation), in ms; `0` while it is in rotation (summed instances keep the longest).
    ejected_ms: GaugeMax, router, optional,
        instance: -,
        worker: (
            "damrey_worker_ejected_ms",
            "How long the instance out of full rotation longest has been out, in ms (0: none)."
        );
}

/// Makes [`Routing`] and [`ROUTING`] from the table below; see the table for its rows.
macro_rules! routing {
    ($(#![doc = $table_doc:literal])*
    $(
        $(#[doc = $doc:literal])*
        $field:ident: $refused:ident, worker: ($worker:literal, $worker_help:literal);
    )*) => {
        /// One worker's routing counts: on one agent, cumulative since the agent's run
        /// started (its router counts them, whatever instance ran or did not run the
        /// step), as the heartbeat carries them; or summed, or within a window. A
        /// heartbeat's worker without an entry, and an entry's missing key, count 0.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(default, deny_unknown_fields)]
        pub struct Routing {
            $($(#[doc = $doc])* pub $field: u64,)*
        }

        $(#[doc = $table_doc])*
        pub const ROUTING: &[RouteStep] = &[$(
            RouteStep {
                name: stringify!($field),
                worker: Family { name: $worker, help: $worker_help },
                value: |routing| routing.$field,
            },
        )*];

        impl Routing {
            /// The counters, which the proxy stores one column each, in the order of
            /// [`Routing::counts`].
            pub const COUNTERS: &[&str] = &[$(stringify!($field),)*];

            /// Each counter with its name.
            pub fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($field), self.$field),)*].into_iter()
            }

            /// Each counter with its name, to fill in.
            pub fn counts_mut(&mut self) -> impl Iterator<Item = (&'static str, &mut u64)> {
                [$((stringify!($field), &mut self.$field),)*].into_iter()
            }

            /// The steps refused, whatever the reason: each ended its line with `ERROR`
            /// without reaching an instance.
            pub fn refused(&self) -> u64 {
                [$(routing!(@refused $refused self.$field),)*]
                    .into_iter()
                    .fold(0, u64::saturating_add)
            }

            /// Whether a counter is lower than in `earlier` (the agent restarted).
            pub fn dropped_since(&self, earlier: &Routing) -> bool {
                [$(Kind::Counter.dropped(self.$field, earlier.$field),)*].contains(&true)
            }

            /// What happened after `earlier`.
            pub fn minus(&self, earlier: &Routing) -> Routing {
                Routing {
                    $($field: Kind::Counter.since(self.$field, earlier.$field),)*
                }
            }

            /// Adds `other`'s counts to these (to sum agents).
            pub fn add(&mut self, other: &Routing) {
                $(self.$field = Kind::Counter.combine(self.$field, other.$field);)*
            }
        }
    };
    (@refused refused $value:expr) => { $value };
    (@refused counted $value:expr) => { 0 };
}

/// One routing counter as the table declares it.
#[derive(Debug, Clone, Copy)]
pub struct RouteStep {
    /// Its name: the field of [`Routing`], the JSON key, and the stored column.
    pub name: &'static str,
    /// Its family in the proxy's `/metrics` (a series per worker).
    pub worker: Family,
    /// Reads it from a [`Routing`].
    pub value: fn(&Routing) -> u64,
}

routing! {
    //! Every routing counter, in the order of the table (and of the metric families).
    //!
    //! Each row: the counter's doc, then `name: refused|counted, worker: family;`, where
    //! `refused` marks the steps refused (counted in a worker's `errors` and `processed`
    //! at the proxy, [`Routing::refused`]) and the family is the counter's in the proxy's
    //! `/metrics`. The names are those of the agent's router
    //! (`damrey_actors::route_counters`), which the agent copies into the heartbeat.
    //!
    //! Adding one takes a row here, a migration adding its column to `route_samples`
    //! (`BIGINT NOT NULL DEFAULT 0`, in `migrations/sqlite` and `migrations/postgres`; the
    //! store's tests check it), and the line that copies it in the agent's heartbeat.
    /// Steps refused because the worker had no live instance (after any wait for one).
    rejected_no_instance: refused,
        worker: (
            "damrey_worker_rejected_no_instance_total",
            "Steps refused because the worker had no live instance."
        );
    /// Steps refused at once because no instance could start them before their deadline.
    rejected_overloaded: refused,
        worker: (
            "damrey_worker_rejected_overloaded_total",
            "Steps refused because no instance of the worker could start them before their deadline."
        );
    /// Steps refused because the worker does not accept their type.
    rejected_type: refused,
        worker: (
            "damrey_worker_rejected_type_total",
            "Steps refused because the worker does not accept their type."
        );
    /// Hand-offs of the worker's steps to another agent that failed and were resent (or
    /// sent elsewhere); not failures of the line.
    handoff_retries: counted,
        worker: (
            "damrey_worker_handoff_retries_total",
            "Hand-offs of the worker's steps to another agent that failed and were resent or sent elsewhere."
        );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(received: u64, errors: u64, in_flight: u64, ejected_ms: u64) -> Counters {
        Counters {
            received,
            processed: errors,
            errors,
            in_flight,
            ejected_ms,
            ..Counters::default()
        }
    }

    #[test]
    fn the_report_serializes_its_counters_in_the_order_agents_always_sent_them() {
        let mut report = InstanceReport::new("add".to_owned(), 1, Latency::default());
        for (index, (_, value)) in report.counts_mut().enumerate() {
            *value = index as u64 + 1;
        }
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            r#"{"worker":"add","instance":1,"received":1,"responses":2,"errors":3,"timeouts":4,"stops":5,"retries":6,"restarts":7,"in_flight":8,"latency":{"sum_us":0,"counts":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]},"ejections":9,"ejected_ms":10}"#
        );
        assert_eq!(
            InstanceReport::COUNTERS,
            report.counts().map(|(name, _)| name).collect::<Vec<_>>()
        );
    }

    #[test]
    fn counters_subtract_sum_and_notice_a_restart_by_their_kind() {
        let earlier = counters(10, 2, 5, 100);
        let now = counters(30, 3, 1, 40);

        let window = now.minus(&earlier);
        let mut sum = now;
        sum.add(&counters(1, 1, 2, 900));

        assert_eq!(window, counters(20, 1, 1, 40));
        assert_eq!(sum, counters(31, 4, 3, 900));
        assert!(!now.dropped_since(&earlier));
        assert!(counters(9, 2, 5, 100).dropped_since(&earlier));
        assert!(!counters(10, 2, 0, 0).dropped_since(&earlier));
        let mut gone = now;
        gone.clear_gauges();
        assert_eq!(gone, counters(30, 3, 0, 0));
    }

    #[test]
    fn routing_counters_subtract_sum_and_notice_a_restart_as_step_counters_do() {
        let routing = |no_instance, overloaded, handoff_retries| Routing {
            rejected_no_instance: no_instance,
            rejected_overloaded: overloaded,
            rejected_type: 1,
            handoff_retries,
        };
        let earlier = routing(2, 0, 5);
        let now = routing(7, 1, 5);

        let window = now.minus(&earlier);
        let mut sum = now;
        sum.add(&routing(1, 1, 1));

        assert_eq!(
            window,
            Routing {
                rejected_type: 0,
                ..routing(5, 1, 0)
            }
        );
        assert_eq!((now.refused(), window.refused()), (9, 6));
        assert_eq!((sum.rejected_no_instance, sum.rejected_type), (8, 2));
        assert!(!now.dropped_since(&earlier));
        assert!(routing(1, 1, 9).dropped_since(&earlier));
        assert_eq!(
            ROUTING
                .iter()
                .map(|step| (step.name, (step.value)(&now)))
                .collect::<Vec<_>>(),
            now.counts().collect::<Vec<_>>()
        );
        assert_eq!(
            Routing::COUNTERS,
            now.counts().map(|(name, _)| name).collect::<Vec<_>>()
        );
    }

    #[test]
    fn every_step_reads_its_own_field_and_every_report_counter_is_a_step() {
        let mut report = InstanceReport::new("add".to_owned(), 1, Latency::default());
        for (index, (_, value)) in report.counts_mut().enumerate() {
            *value = index as u64 + 1;
        }
        let counters = Counters::of(&report);
        let values: Vec<_> = STEPS
            .iter()
            .map(|step| (step.name, (step.value)(&counters)))
            .collect();
        assert_eq!(
            values,
            [
                ("received", 1),
                ("processed", 2 + 3 + 4 + 5),
                ("responses", 2),
                ("errors", 3),
                ("timeouts", 4),
                ("stops", 5),
                ("retries", 6),
                ("restarts", 7),
                ("in_flight", 8),
                ("ejections", 9),
                ("ejected_ms", 10),
            ]
        );
        let tally = Tally::default();
        tally.received.store(41, Ordering::Relaxed);
        tally.in_flight.store(2, Ordering::Relaxed);
        tally.load_into(&mut report);
        assert_eq!(
            (report.received, report.in_flight, report.ejections),
            (41, 2, 9)
        );
    }
}
