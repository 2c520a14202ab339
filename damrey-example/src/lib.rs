//! The seed's example workers: `http request => entry => add => square`, computing
//! (a+b)^2. Each is a plain actix actor handling [`Message`]; the binaries in `src/bin`
//! run each as its own process attached to an agent.

pub mod front;
pub mod process;

use std::time::Duration;

use damrey_actors::prelude::*;

/// The message type of the example line.
pub const SQSUM: &str = "sqsum";

/// The configs of the example line, as registered with the proxy.
pub fn line_specs() -> [WorkerSpec; 3] {
    [
        WorkerSpec::new("entry").mpu(100).command(SQSUM, "add"),
        WorkerSpec::new("add").mpu(100).command(SQSUM, "square"),
        WorkerSpec::new("square").mpu(100).command(SQSUM, ""),
    ]
}

/// The front door: checks that a request carries two integers and passes it on.
pub struct Entry;

impl Actor for Entry {
    type Context = Context<Self>;
}

impl Handler<Message> for Entry {
    type Result = Message;

    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        match integers::<2>(&msg) {
            Ok(_) => msg,
            Err(reason) => Message::error(msg.kind, reason),
        }
    }
}

/// Adds its two integer args.
pub struct Add;

impl Actor for Add {
    type Context = Context<Self>;
}

impl Handler<Message> for Add {
    type Result = Message;

    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        let sum = integers::<2>(&msg).and_then(|[a, b]| {
            a.checked_add(b)
                .ok_or_else(|| format!("{a} + {b} overflows"))
        });
        match sum {
            Ok(sum) => Message::response(msg.kind, [sum.to_string()]),
            Err(reason) => Message::error(msg.kind, reason),
        }
    }
}

/// Squares its one integer arg.
pub struct Square;

impl Actor for Square {
    type Context = Context<Self>;
}

impl Handler<Message> for Square {
    type Result = Message;

    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        let square = integers::<1>(&msg)
            .and_then(|[n]| n.checked_mul(n).ok_or_else(|| format!("{n}^2 overflows")));
        match square {
            Ok(square) => Message::response(msg.kind, [square.to_string()]),
            Err(reason) => Message::error(msg.kind, reason),
        }
    }
}

/// Echoes its args after sleeping the milliseconds in the first one: a worker whose
/// handler returns a future (`ResponseFuture`), handy for watching timeouts, `mpu` and
/// faults.
pub struct Nap;

impl Actor for Nap {
    type Context = Context<Self>;
}

impl Handler<Message> for Nap {
    type Result = ResponseFuture<Message>;

    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Self::Result {
        Box::pin(async move {
            match integers::<1>(&Message::request(msg.kind.clone(), msg.args.iter().take(1))) {
                Ok([ms]) => {
                    actix_rt::time::sleep(Duration::from_millis(ms.max(0).unsigned_abs())).await;
                    Message::response(msg.kind, msg.args)
                }
                Err(reason) => Message::error(msg.kind, reason),
            }
        })
    }
}

/// Reads exactly `N` integer args (ASCII whitespace around each is ignored), or says
/// what is wrong with them.
///
/// # Errors
/// A reason a person can read: how many arguments were wanted, or which is not an integer.
pub fn integers<const N: usize>(msg: &Message) -> Result<[i64; N], String> {
    if msg.args.len() != N {
        return Err(format!(
            "{} wants {N} integer argument(s), got {}",
            msg.kind,
            msg.args.len()
        ));
    }
    let mut values = [0; N];
    for (value, arg) in values.iter_mut().zip(&msg.args) {
        *value = arg
            .trim_ascii()
            .parse()
            .map_err(|_| format!("{arg:?} is not an integer"))?;
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use damrey_actors::testkit;

    fn sqsum(args: &[&str]) -> Message {
        Message::request(SQSUM, args.iter().copied())
    }

    #[actix::test]
    async fn add_sums_two_integers() {
        let reply = testkit::call(|| Add, sqsum(&["3", "4"])).await;
        assert_eq!(reply, Message::response(SQSUM, ["7"]));
    }

    #[test]
    fn integers_may_be_padded_with_ascii_whitespace_only() {
        assert_eq!(integers::<2>(&sqsum(&[" 3\n", "\t4 "])), Ok([3, 4]));
        let no_break_space = integers::<1>(&sqsum(&["\u{a0}3"]));
        assert!(
            no_break_space
                .as_ref()
                .is_err_and(|reason| reason.ends_with("is not an integer")),
            "{no_break_space:?}"
        );
    }

    #[actix::test]
    async fn add_reports_overflow_and_bad_args() {
        let max = i64::MAX.to_string();
        assert_eq!(
            testkit::call(|| Add, sqsum(&[&max, "1"])).await,
            Message::error(SQSUM, format!("{max} + 1 overflows"))
        );
        assert_eq!(
            testkit::call(|| Add, sqsum(&["3", "x"])).await,
            Message::error(SQSUM, "\"x\" is not an integer")
        );
        assert_eq!(
            testkit::call(|| Add, sqsum(&["3"])).await,
            Message::error(SQSUM, "sqsum wants 2 integer argument(s), got 1")
        );
    }

    #[actix::test]
    async fn the_whole_line_computes_the_square_of_the_sum() {
        let mesh = TestMesh::new(line_specs()).unwrap();
        mesh.start("entry", || Entry).await.unwrap();
        mesh.start("add", || Add).await.unwrap();
        mesh.start("square", || Square).await.unwrap();

        assert_eq!(
            mesh.request("entry", sqsum(&["3", "4"])).await,
            Message::response(SQSUM, ["49"])
        );
        assert_eq!(
            mesh.request("entry", sqsum(&["3"])).await,
            Message::error(SQSUM, "sqsum wants 2 integer argument(s), got 1")
        );
        let big = (i64::MAX / 2).to_string();
        assert_eq!(
            mesh.request("entry", sqsum(&[&big, "1"])).await,
            Message::error(SQSUM, format!("{}^2 overflows", i64::MAX / 2 + 1))
        );
    }
}
