//! The file each test worker process appends to: when it attached, every step it
//! completed (written before the result is returned), and every reply its own outbox
//! got. One line per event, one file per process, so no two writers share a file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use damrey_actors::Message;

/// Milliseconds since the epoch; the checker and the workers share one clock (one machine).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// One event of a worker process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The worker attached to its agent.
    Attached {
        /// When.
        at_ms: u64,
    },
    /// A step completed.
    Step {
        /// The request id.
        request_id: String,
        /// Steps done before it.
        hop: u64,
        /// The worker that ran it.
        worker: String,
        /// When it completed.
        at_ms: u64,
    },
    /// A sub-request from the worker's outbox got its reply.
    Outbox {
        /// The sub-request's id.
        sub_id: String,
        /// The line it was put on.
        line: usize,
        /// The value it carried.
        value: u64,
        /// Its deadline.
        deadline_ms: u64,
        /// When it was sent.
        sent_ms: u64,
        /// How long the reply took, on the worker's monotonic clock.
        elapsed_ms: u64,
        /// The reply.
        reply: Message,
    },
    /// A sub-request was pushed (no reply wanted).
    Pushed {
        /// The sub-request's id.
        sub_id: String,
        /// The line it was put on.
        line: usize,
        /// The value it carried.
        value: u64,
        /// When.
        at_ms: u64,
    },
}

impl Record {
    /// The record as one line (without the newline).
    pub fn to_line(&self) -> String {
        match self {
            Record::Attached { at_ms } => format!("A {at_ms}"),
            Record::Step {
                request_id,
                hop,
                worker,
                at_ms,
            } => format!("S {request_id} {hop} {worker} {at_ms}"),
            Record::Outbox {
                sub_id,
                line,
                value,
                deadline_ms,
                sent_ms,
                elapsed_ms,
                reply,
            } => format!(
                "O {sub_id} {line} {value} {deadline_ms} {sent_ms} {elapsed_ms} {}",
                reply.to_json()
            ),
            Record::Pushed {
                sub_id,
                line,
                value,
                at_ms,
            } => format!("P {sub_id} {line} {value} {at_ms}"),
        }
    }

    /// Reads one line; `None` for a torn or foreign line.
    pub fn parse(line: &str) -> Option<Record> {
        let mut words = line.splitn(8, ' ');
        let number = |word: Option<&str>| word.and_then(|word| word.parse::<u64>().ok());
        match words.next()? {
            "A" => Some(Record::Attached {
                at_ms: number(words.next())?,
            }),
            "S" => Some(Record::Step {
                request_id: words.next()?.to_owned(),
                hop: number(words.next())?,
                worker: words.next()?.to_owned(),
                at_ms: number(words.next())?,
            }),
            "O" => Some(Record::Outbox {
                sub_id: words.next()?.to_owned(),
                line: number(words.next())? as usize,
                value: number(words.next())?,
                deadline_ms: number(words.next())?,
                sent_ms: number(words.next())?,
                elapsed_ms: number(words.next())?,
                reply: Message::from_json(words.next()?).ok()?,
            }),
            "P" => Some(Record::Pushed {
                sub_id: words.next()?.to_owned(),
                line: number(words.next())? as usize,
                value: number(words.next())?,
                at_ms: number(words.next())?,
            }),
            _ => None,
        }
    }
}

/// Appends records to a worker process's file, one `write` per line.
pub struct Recorder(Mutex<File>);

impl Recorder {
    /// Opens (creates) the file for appending.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &Path) -> std::io::Result<Recorder> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Recorder(Mutex::new(file)))
    }

    /// Appends one record and flushes it to the OS.
    pub fn write(&self, record: &Record) {
        let line = format!("{}\n", record.to_line());
        let mut file = self
            .0
            .lock()
            .expect("no writer panics while holding the file");
        if let Err(error) = file.write_all(line.as_bytes()) {
            tracing::error!(%error, "cannot write a record");
        }
    }
}

/// Every record in the file at `path` (an absent file has none).
pub fn read(path: &Path) -> Vec<Record> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(Record::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_survives_its_line() {
        let records = [
            Record::Attached { at_ms: 5 },
            Record::Step {
                request_id: "r1".into(),
                hop: 2,
                worker: "w3".into(),
                at_ms: 9,
            },
            Record::Outbox {
                sub_id: "r1~4".into(),
                line: 1,
                value: 7,
                deadline_ms: 900,
                sent_ms: 3,
                elapsed_ms: 40,
                reply: Message::error("l1t0", "worker w has no live instance"),
            },
            Record::Pushed {
                sub_id: "r2~1".into(),
                line: 0,
                value: 1,
                at_ms: 4,
            },
        ];
        for record in records {
            assert_eq!(Record::parse(&record.to_line()), Some(record));
        }
    }
}
