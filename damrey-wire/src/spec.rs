//! Worker configuration as the proxy stores it (the seed's worker JSON) and its validation.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A worker configuration that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A worker or command name is empty, too long, or has a character outside `A–Z a–z 0–9 _ . -`.
    #[error("{field} {name:?} {problem}")]
    InvalidName {
        /// Which field holds the name.
        field: &'static str,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The `agent` field is neither empty nor `host:port`.
    #[error("agent {agent:?} {problem}")]
    InvalidAgent {
        /// The address as given.
        agent: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Two commands share a name.
    #[error("command {0:?} is listed twice")]
    DuplicateCommand(String),
    /// An alarm threshold is out of its range.
    #[error("alarms.{field} {problem}")]
    InvalidAlarm {
        /// Which threshold.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// An outlier ejection or queue setting is out of its range.
    #[error("outlier.{field} {problem}")]
    InvalidOutlier {
        /// Which setting.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// The longest worker, command or type name.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a worker or command name: 1–64 of `A–Z a–z 0–9 _ . -`.
///
/// # Errors
/// [`SpecError::InvalidName`] naming the field and saying what is wrong.
pub fn validate_name(field: &'static str, name: &str) -> Result<(), SpecError> {
    let problem = if name.is_empty() {
        Some("must not be empty".to_owned())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!(
            "is {} characters long, the most is {MAX_NAME_LEN}",
            name.len()
        ))
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
            .map(|c| format!("contains {c:?}; only A-Z a-z 0-9 _ . - are allowed"))
    };
    match problem {
        Some(problem) => Err(SpecError::InvalidName {
            field,
            name: name.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

/// The most messages one instance processes at once; `0` means unlimited.
///
/// Accepted as a JSON string (`"100"`, `""` for unlimited) or a number; written as a
/// string, the seed's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mpu(pub u32);

impl Mpu {
    /// No limit.
    pub const UNLIMITED: Mpu = Mpu(0);

    /// The limit, or `None` when unlimited.
    pub fn limit(self) -> Option<u32> {
        (self.0 > 0).then_some(self.0)
    }
}

/// `mpu` is read from a string (`"100"`, empty for unlimited) or a number.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Mpu {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^\s*[0-9]*\s*$"))
                    .description(Some("A whole number from 0 to 4294967295; empty is unlimited")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(u32::MAX)),
            )
            .description(Some(
                "The most messages one instance processes at once; 0 is unlimited. Written as a string.",
            ))
            .examples(["100"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Mpu {}

impl Serialize for Mpu {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Mpu {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MpuVisitor)
    }
}

struct MpuVisitor;

impl Visitor<'_> for MpuVisitor {
    type Value = Mpu;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("mpu as a whole number from 0 to 4294967295, or a string holding one")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Mpu, E> {
        u32::try_from(v)
            .map(Mpu)
            .map_err(|_| E::custom(format!("mpu {v} is too large")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Mpu, E> {
        u64::try_from(v)
            .map_err(|_| E::custom(format!("mpu {v} is negative")))
            .and_then(|v| self.visit_u64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Mpu, E> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(Mpu::UNLIMITED);
        }
        v.parse::<u32>().map(Mpu).map_err(|_| {
            E::custom(format!(
                "mpu {v:?} is not a whole number from 0 to 4294967295"
            ))
        })
    }
}

/// One message type a worker accepts, and where its results go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// The message type.
    pub name: String,
    /// The next worker on the line for this type; empty ends the line.
    #[serde(default)]
    pub worker: String,
    /// Stored and reserved.
    #[serde(default)]
    pub mpu: Mpu,
}

/// A worker's configuration, the seed's JSON:
/// `{"name":"add","agent":"","mpu":"100","commands":[{"name":"sqsum","worker":"square","mpu":"1"}]}`.
///
/// Deserializing validates it: unknown fields, bad names and duplicate command names
/// are rejected with a message that names the problem.
///
/// ```
/// use damrey_wire::WorkerSpec;
///
/// let spec: WorkerSpec = serde_json::from_str(
///     r#"{"name":"add","agent":"","mpu":"100","commands":[{"name":"sqsum","worker":"square","mpu":"1"}]}"#,
/// ).unwrap();
/// assert_eq!(spec.next_worker("sqsum"), Some("square"));
/// assert_eq!(spec, WorkerSpec::new("add").mpu(100).command("sqsum", "square").command_mpu(1));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawWorkerSpec")]
pub struct WorkerSpec {
    /// The worker's name.
    pub name: String,
    /// Empty: wherever instances are attached; `host:port`: pinned to that agent.
    pub agent: String,
    /// The most messages one instance processes at once.
    pub mpu: Mpu,
    /// The message types the worker accepts.
    pub commands: Vec<CommandSpec>,
    /// Alarm thresholds for this worker; `None` uses [`AlarmRules::default`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarms: Option<AlarmRules>,
    /// When an instance is taken out of the rotation for failing, and how deep its
    /// queue may grow; `None` uses [`OutlierRules::default`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier: Option<OutlierRules>,
}

/// The worker JSON as written, before validation. Its schema is [`WorkerSpec`]'s in the
/// services' OpenAPI documents: what is accepted is what this type reads.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(
    as = WorkerSpec,
    description = "A worker's configuration, the seed's worker JSON: only `name` is required, and no field but these is accepted. Names are checked and command names may not repeat.",
    example = json!({"name": "add", "agent": "", "mpu": "100", "commands": [{"name": "sqsum", "worker": "square", "mpu": "1"}]})
))]
#[serde(deny_unknown_fields)]
struct RawWorkerSpec {
    /// The worker's name: 1–64 of `A–Z a–z 0–9 _ . -`.
    name: String,
    /// Empty (the default): wherever instances are attached; `host:port`: pinned to
    /// that agent.
    #[serde(default)]
    agent: String,
    /// The most messages one instance processes at once; `0` or empty is unlimited.
    #[serde(default)]
    mpu: Mpu,
    /// The message types the worker accepts, each name once.
    #[serde(default)]
    commands: Vec<CommandSpec>,
    /// Alarm thresholds; absent uses the defaults.
    #[serde(default)]
    alarms: Option<AlarmRules>,
    /// Outlier ejection and queue settings; absent uses the defaults.
    #[serde(default)]
    outlier: Option<OutlierRules>,
}

/// The schema of a worker config is the schema of what deserializing one reads.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for WorkerSpec {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <RawWorkerSpec as utoipa::PartialSchema>::schema()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for WorkerSpec {
    fn name() -> std::borrow::Cow<'static, str> {
        <RawWorkerSpec as utoipa::ToSchema>::name()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <RawWorkerSpec as utoipa::ToSchema>::schemas(schemas);
    }
}

impl TryFrom<RawWorkerSpec> for WorkerSpec {
    type Error = SpecError;

    fn try_from(raw: RawWorkerSpec) -> Result<Self, SpecError> {
        let spec = WorkerSpec {
            name: raw.name,
            agent: raw.agent,
            mpu: raw.mpu,
            commands: raw.commands,
            alarms: raw.alarms,
            outlier: raw.outlier,
        };
        spec.validate()?;
        Ok(spec)
    }
}

impl WorkerSpec {
    /// A worker that accepts no types yet, on any agent, with no mpu limit.
    pub fn new(name: impl Into<String>) -> Self {
        WorkerSpec {
            name: name.into(),
            agent: String::new(),
            mpu: Mpu::UNLIMITED,
            commands: Vec::new(),
            alarms: None,
            outlier: None,
        }
    }

    /// Sets the worker-level mpu (`0` is unlimited).
    pub fn mpu(mut self, mpu: u32) -> Self {
        self.mpu = Mpu(mpu);
        self
    }

    /// Pins the worker to the agent at `host:port`.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = agent.into();
        self
    }

    /// Accepts type `kind` and sends its results to `next` (empty ends the line).
    pub fn command(mut self, kind: impl Into<String>, next: impl Into<String>) -> Self {
        self.commands.push(CommandSpec {
            name: kind.into(),
            worker: next.into(),
            mpu: Mpu::UNLIMITED,
        });
        self
    }

    /// Sets the (reserved) mpu of the command added last.
    pub fn command_mpu(mut self, mpu: u32) -> Self {
        if let Some(command) = self.commands.last_mut() {
            command.mpu = Mpu(mpu);
        }
        self
    }

    /// The command for type `kind`, if the worker accepts it.
    pub fn find_command(&self, kind: &str) -> Option<&CommandSpec> {
        self.commands.iter().find(|command| command.name == kind)
    }

    /// Where a message of type `kind` leaving this worker goes: `Some("")` ends the line,
    /// `None` means the worker does not list the type.
    pub fn next_worker(&self, kind: &str) -> Option<&str> {
        self.find_command(kind)
            .map(|command| command.worker.as_str())
    }

    /// Checks names, the agent address and that no command name repeats.
    ///
    /// # Errors
    /// The first [`SpecError`] found.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_name("name", &self.name)?;
        if !self.agent.is_empty() {
            validate_agent(&self.agent)?;
        }
        let mut seen = HashSet::with_capacity(self.commands.len());
        for command in &self.commands {
            validate_name("command name", &command.name)?;
            if !command.worker.is_empty() {
                validate_name("command worker", &command.worker)?;
            }
            if !seen.insert(command.name.as_str()) {
                return Err(SpecError::DuplicateCommand(command.name.clone()));
            }
        }
        if let Some(alarms) = &self.alarms {
            alarms.validate()?;
        }
        if let Some(outlier) = &self.outlier {
            outlier.validate()?;
        }
        Ok(())
    }

    /// What in this config cannot carry a line yet, given every stored config
    /// (`configs`; this worker's own entry in it is ignored): a command that sends to a
    /// worker that is not configured or does not accept the type, and a type whose line
    /// comes back to a worker it passed (a loop, which ends at the hop limit). Configs
    /// may arrive in any order, so these are warnings, not refusals.
    pub fn warnings(&self, configs: &[WorkerSpec]) -> Vec<String> {
        let find = |name: &str| {
            if name == self.name {
                Some(self)
            } else {
                configs.iter().find(|spec| spec.name == name)
            }
        };
        let mut warnings = Vec::new();
        for command in self.commands.iter().filter(|c| !c.worker.is_empty()) {
            let kind = &command.name;
            let mut path = vec![self.name.as_str()];
            let mut next = command.worker.as_str();
            loop {
                let Some(spec) = find(next) else {
                    warnings.push(format!(
                        "type {kind:?} goes to worker {next}, which is not configured"
                    ));
                    break;
                };
                let Some(after) = spec.next_worker(kind) else {
                    warnings.push(format!(
                        "type {kind:?} goes to worker {next}, which does not accept it"
                    ));
                    break;
                };
                if path.contains(&next) {
                    path.push(next);
                    warnings.push(format!(
                        "type {kind:?} loops: {} (it would end at the hop limit)",
                        path.join(" => ")
                    ));
                    break;
                }
                path.push(next);
                if after.is_empty() {
                    break;
                }
                next = after;
            }
        }
        warnings
    }

    /// Sets the worker's alarm thresholds.
    pub fn alarms(mut self, alarms: AlarmRules) -> Self {
        self.alarms = Some(alarms);
        self
    }

    /// The alarm thresholds that apply: the worker's own or the defaults.
    pub fn alarm_rules(&self) -> AlarmRules {
        self.alarms.unwrap_or_default()
    }

    /// Sets the worker's outlier ejection and queue settings.
    pub fn outlier(mut self, outlier: OutlierRules) -> Self {
        self.outlier = Some(outlier);
        self
    }

    /// The outlier ejection and queue settings that apply: the worker's own or the defaults.
    pub fn outlier_rules(&self) -> OutlierRules {
        self.outlier.unwrap_or_default()
    }
}

/// When an agent takes one instance of a worker out of its rotation for failing, and
/// how many steps may wait for one instance; the optional `outlier` object of the
/// worker JSON, every field optional:
/// `{"consecutive_failures":5,"window_ms":10000,"min_steps":20,"failure_rate":0.5,"ejection_ms":1000,"max_ejection_ms":60000,"probation_steps":3,"max_queue":1000}`.
///
/// A failure is a step the instance is to blame for: `TIMEOUT` of the step (the worker's
/// step timeout, before the request's deadline), the instance lost while it held the
/// step (connection or process gone), or an `ERROR` the runtime produced because the
/// handler panicked. An `ERROR` the handler returned is its answer about the request
/// and counts as a success. `consecutive_failures` failures in a row, or more than
/// `failure_rate` of at least `min_steps` steps within `window_ms`, eject the instance
/// for `ejection_ms`, doubling (with jitter) up to `max_ejection_ms` while it keeps
/// failing. Then it is on probation: one step at a time, and back in full rotation
/// after `probation_steps` successes; a failure ejects it again for longer. The last
/// routable instance of a worker is never ejected. `consecutive_failures: 0` turns
/// ejection off.
///
/// `max_queue` bounds the steps waiting for a slot (beyond `mpu`) of one instance: a
/// step that finds it full, or that could not start before its deadline (from the
/// queue and the instance's recent step times), goes to another instance or is
/// answered `ERROR` at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct OutlierRules {
    /// Failures in a row that eject an instance; `0` never ejects.
    pub consecutive_failures: u32,
    /// The window the failure rate is measured over, 1 s to 1 h.
    pub window_ms: u64,
    /// The fewest steps in the window for the rate rule to apply (at least 1).
    pub min_steps: u64,
    /// Eject when more than this share of the window's steps failed (0 < rate ≤ 1).
    pub failure_rate: f64,
    /// The first ejection's length, 10 ms to 1 h.
    pub ejection_ms: u64,
    /// The longest ejection, from `ejection_ms` to 1 h.
    pub max_ejection_ms: u64,
    /// Successes on probation that put an instance back in full rotation (at least 1).
    pub probation_steps: u32,
    /// The most steps waiting for one instance beyond its `mpu` (at least 1).
    pub max_queue: u32,
}

impl Default for OutlierRules {
    fn default() -> Self {
        OutlierRules {
            consecutive_failures: 5,
            window_ms: 10_000,
            min_steps: 20,
            failure_rate: 0.5,
            ejection_ms: 1_000,
            max_ejection_ms: 60_000,
            probation_steps: 3,
            max_queue: 1_000,
        }
    }
}

impl OutlierRules {
    /// Checks every setting's range.
    ///
    /// # Errors
    /// [`SpecError::InvalidOutlier`] naming the first setting out of range.
    pub fn validate(&self) -> Result<(), SpecError> {
        let invalid = |field, problem: String| Err(SpecError::InvalidOutlier { field, problem });
        if !(1_000..=3_600_000).contains(&self.window_ms) {
            return invalid(
                "window_ms",
                format!("{} must be from 1000 to 3600000", self.window_ms),
            );
        }
        if self.min_steps == 0 {
            return invalid("min_steps", "0 must be at least 1".to_owned());
        }
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return invalid(
                "failure_rate",
                format!("{} must be over 0 and at most 1", self.failure_rate),
            );
        }
        if !(10..=3_600_000).contains(&self.ejection_ms) {
            return invalid(
                "ejection_ms",
                format!("{} must be from 10 to 3600000", self.ejection_ms),
            );
        }
        if !(self.ejection_ms..=3_600_000).contains(&self.max_ejection_ms) {
            return invalid(
                "max_ejection_ms",
                format!(
                    "{} must be from ejection_ms ({}) to 3600000",
                    self.max_ejection_ms, self.ejection_ms
                ),
            );
        }
        if self.probation_steps == 0 {
            return invalid("probation_steps", "0 must be at least 1".to_owned());
        }
        if self.max_queue == 0 {
            return invalid("max_queue", "0 must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// When the proxy raises an alarm for a worker; the optional `alarms` object of the
/// worker JSON, every field optional:
/// `{"no_instance":true,"window_ms":60000,"min_messages":20,"error_rate":0.05,"timeout_rate":0.05,"p99_ms":1000,"ejected_ms":30000}`.
///
/// Rates are shares of the steps processed within the window; the rate and p99 rules
/// apply only once the window holds at least `min_messages` steps. A window longer than
/// the proxy keeps samples (`stats_retention_ms`, 10 minutes by default) is cut to it. A rate of `1` or a very large `p99_ms`
/// turns that rule off in effect; `no_instance: false` turns the instance rule off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct AlarmRules {
    /// Alarm when the worker has no live instance anywhere.
    pub no_instance: bool,
    /// The window rates and latencies are measured over, 1 s to 1 h.
    pub window_ms: u64,
    /// The fewest steps in the window for the rate and latency rules to apply.
    pub min_messages: u64,
    /// Alarm when more than this share of steps answer `ERROR` (0 < rate ≤ 1).
    pub error_rate: f64,
    /// Alarm when more than this share of steps run out of time (0 < rate ≤ 1).
    pub timeout_rate: f64,
    /// Alarm when the 99th percentile step latency is over this many milliseconds.
    pub p99_ms: f64,
    /// Alarm when an instance has been out of an agent's rotation for failing (ejected,
    /// or on probation after an ejection) longer than this many milliseconds, 1 s to 1 day.
    pub ejected_ms: u64,
}

impl Default for AlarmRules {
    fn default() -> Self {
        AlarmRules {
            no_instance: true,
            window_ms: 60_000,
            min_messages: 20,
            error_rate: 0.05,
            timeout_rate: 0.05,
            p99_ms: 1_000.0,
            ejected_ms: 30_000,
        }
    }
}

impl AlarmRules {
    /// Checks every threshold's range.
    ///
    /// # Errors
    /// [`SpecError::InvalidAlarm`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), SpecError> {
        let invalid = |field, problem: String| Err(SpecError::InvalidAlarm { field, problem });
        if !(1_000..=3_600_000).contains(&self.window_ms) {
            return invalid(
                "window_ms",
                format!("{} must be from 1000 to 3600000", self.window_ms),
            );
        }
        for (field, rate) in [
            ("error_rate", self.error_rate),
            ("timeout_rate", self.timeout_rate),
        ] {
            if !(rate > 0.0 && rate <= 1.0) {
                return invalid(field, format!("{rate} must be over 0 and at most 1"));
            }
        }
        if !(self.p99_ms > 0.0 && self.p99_ms.is_finite()) {
            return invalid("p99_ms", format!("{} must be over 0", self.p99_ms));
        }
        if !(1_000..=86_400_000).contains(&self.ejected_ms) {
            return invalid(
                "ejected_ms",
                format!("{} must be from 1000 to 86400000", self.ejected_ms),
            );
        }
        Ok(())
    }
}

/// Checks an agent address: `host:port` with a non-empty host and a port from 1 to 65535.
///
/// # Errors
/// [`SpecError::InvalidAgent`] saying what is wrong.
pub fn validate_agent(agent: &str) -> Result<(), SpecError> {
    let invalid = |problem: &str| SpecError::InvalidAgent {
        agent: agent.to_owned(),
        problem: problem.to_owned(),
    };
    let (host, port) = agent
        .rsplit_once(':')
        .ok_or_else(|| invalid("must be host:port"))?;
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':'))
    {
        return Err(invalid("has no valid host before the port"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(invalid("has no port from 1 to 65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_name_what_cannot_carry_a_line_yet() {
        let add = WorkerSpec::new("add").command("sqsum", "square");
        let square = WorkerSpec::new("square").command("sqsum", "");
        let entry = WorkerSpec::new("entry").command("sqsum", "add");

        assert_eq!(
            add.warnings(&[]),
            [r#"type "sqsum" goes to worker square, which is not configured"#]
        );
        assert!(add.warnings(std::slice::from_ref(&square)).is_empty());
        assert!(entry.warnings(&[add.clone(), square.clone()]).is_empty());
        assert_eq!(
            entry.warnings(&[add.clone(), WorkerSpec::new("square").command("cube", "")]),
            [r#"type "sqsum" goes to worker square, which does not accept it"#]
        );
        let ping = WorkerSpec::new("ping").command("ball", "pong");
        let pong = WorkerSpec::new("pong").command("ball", "ping");
        assert_eq!(
            ping.warnings(std::slice::from_ref(&pong)),
            [r#"type "ball" loops: ping => pong => ping (it would end at the hop limit)"#]
        );
        assert_eq!(
            WorkerSpec::new("me").command("echo", "me").warnings(&[]),
            [r#"type "echo" loops: me => me (it would end at the hop limit)"#]
        );
    }

    fn parse(json: &str) -> Result<WorkerSpec, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn the_seed_json_parses_and_writes_back_in_the_seed_form() {
        let json = r#"{"name":"entry","agent":"","mpu":"100","commands":[{"name":"test","worker":"testWorker","mpu":"1"}]}"#;
        let spec = parse(json).unwrap();
        assert_eq!(spec.mpu, Mpu(100));
        assert_eq!(serde_json::to_string(&spec).unwrap(), json);
    }

    #[test]
    fn mpu_is_accepted_as_a_number_or_a_string() {
        assert_eq!(parse(r#"{"name":"a","mpu":7}"#).unwrap().mpu, Mpu(7));
        assert_eq!(parse(r#"{"name":"a","mpu":""}"#).unwrap().mpu, Mpu(0));
        assert!(
            parse(r#"{"name":"a","mpu":"ten"}"#)
                .unwrap_err()
                .contains(r#"mpu "ten" is not a whole number"#)
        );
        assert!(
            parse(r#"{"name":"a","mpu":-1}"#)
                .unwrap_err()
                .contains("mpu -1 is negative")
        );
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        assert!(
            parse(r#"{"name":"a","colour":"red"}"#)
                .unwrap_err()
                .contains("unknown field `colour`")
        );
        assert!(
            parse(r#"{"name":"a","commands":[{"name":"t","wrker":"b"}]}"#)
                .unwrap_err()
                .contains("unknown field `wrker`")
        );
    }

    #[test]
    fn bad_names_are_rejected_with_the_reason() {
        let long = "x".repeat(65);
        let cases = [
            (r#"{"name":""}"#.to_owned(), "name \"\" must not be empty"),
            (format!(r#"{{"name":"{long}"}}"#), "65 characters long"),
            (
                r#"{"name":"a'; DROP TABLE workers;--"}"#.to_owned(),
                "contains '\\''",
            ),
            (
                r#"{"name":"a","commands":[{"name":"t","worker":"b c"}]}"#.to_owned(),
                "command worker \"b c\" contains ' '",
            ),
        ];
        for (json, expected) in cases {
            let error = parse(&json).unwrap_err();
            assert!(error.contains(expected), "`{error}` lacks `{expected}`");
        }
        assert!(parse(&format!(r#"{{"name":"{}"}}"#, "x".repeat(64))).is_ok());
        assert!(parse(r#"{"name":"A-z_0.9"}"#).is_ok());
    }

    #[test]
    fn duplicate_command_names_are_rejected() {
        let error = parse(r#"{"name":"a","commands":[{"name":"t"},{"name":"t","worker":"b"}]}"#)
            .unwrap_err();
        assert!(error.contains("command \"t\" is listed twice"), "{error}");
    }

    #[test]
    fn alarms_override_some_defaults_and_are_validated() {
        let spec = parse(r#"{"name":"a","alarms":{"window_ms":5000,"error_rate":0.5}}"#).unwrap();
        let rules = spec.alarm_rules();
        assert_eq!((rules.window_ms, rules.error_rate), (5_000, 0.5));
        assert_eq!(rules.p99_ms, AlarmRules::default().p99_ms);
        assert!(
            serde_json::to_string(&spec)
                .unwrap()
                .contains(r#""window_ms":5000"#)
        );
        let plain = parse(r#"{"name":"a"}"#).unwrap();
        assert_eq!(plain.alarm_rules(), AlarmRules::default());
        assert!(!serde_json::to_string(&plain).unwrap().contains("alarms"));
        let cases = [
            (
                r#"{"window_ms":10}"#,
                "alarms.window_ms 10 must be from 1000",
            ),
            (r#"{"error_rate":0}"#, "alarms.error_rate 0 must be over 0"),
            (
                r#"{"timeout_rate":1.5}"#,
                "alarms.timeout_rate 1.5 must be over 0",
            ),
            (r#"{"p99_ms":-1}"#, "alarms.p99_ms -1 must be over 0"),
            (
                r#"{"ejected_ms":5}"#,
                "alarms.ejected_ms 5 must be from 1000",
            ),
            (r#"{"p99":5}"#, "unknown field `p99`"),
            (r#"{"min_messages":-1}"#, "invalid value"),
        ];
        for (alarms, expected) in cases {
            let error = parse(&format!(r#"{{"name":"a","alarms":{alarms}}}"#)).unwrap_err();
            assert!(
                error.contains(expected),
                "{alarms}: `{error}` lacks `{expected}`"
            );
        }
    }

    #[test]
    fn outlier_settings_override_some_defaults_and_are_validated() {
        let spec =
            parse(r#"{"name":"a","outlier":{"consecutive_failures":2,"max_queue":7}}"#).unwrap();
        let rules = spec.outlier_rules();
        assert_eq!((rules.consecutive_failures, rules.max_queue), (2, 7));
        assert_eq!(rules.ejection_ms, OutlierRules::default().ejection_ms);
        assert!(
            serde_json::to_string(&spec)
                .unwrap()
                .contains(r#""max_queue":7"#)
        );
        let plain = parse(r#"{"name":"a"}"#).unwrap();
        assert_eq!(plain.outlier_rules(), OutlierRules::default());
        assert!(!serde_json::to_string(&plain).unwrap().contains("outlier"));
        let cases = [
            (
                r#"{"window_ms":10}"#,
                "outlier.window_ms 10 must be from 1000",
            ),
            (
                r#"{"min_steps":0}"#,
                "outlier.min_steps 0 must be at least 1",
            ),
            (
                r#"{"failure_rate":0}"#,
                "outlier.failure_rate 0 must be over 0",
            ),
            (
                r#"{"ejection_ms":1}"#,
                "outlier.ejection_ms 1 must be from 10",
            ),
            (
                r#"{"ejection_ms":5000,"max_ejection_ms":1000}"#,
                "outlier.max_ejection_ms 1000 must be from ejection_ms (5000)",
            ),
            (r#"{"probation_steps":0}"#, "outlier.probation_steps 0"),
            (
                r#"{"max_queue":0}"#,
                "outlier.max_queue 0 must be at least 1",
            ),
            (r#"{"queue":5}"#, "unknown field `queue`"),
        ];
        for (outlier, expected) in cases {
            let error = parse(&format!(r#"{{"name":"a","outlier":{outlier}}}"#)).unwrap_err();
            assert!(
                error.contains(expected),
                "{outlier}: `{error}` lacks `{expected}`"
            );
        }
    }

    #[test]
    fn agents_must_be_host_and_port() {
        assert!(parse(r#"{"name":"a","agent":"127.0.0.1:7701"}"#).is_ok());
        for agent in ["localhost", ":7701", "h:0", "h:99999", "h:x"] {
            let error = parse(&format!(r#"{{"name":"a","agent":"{agent}"}}"#)).unwrap_err();
            assert!(error.contains("agent"), "{agent}: {error}");
        }
    }
}
