//! How a service takes connections: the TCP listener it binds before it builds its
//! server, so that it knows its port (0 lets the OS choose) before anything starts, and
//! how long it keeps an idle connection.
//!
//! `std::net::TcpListener::bind` listens with a backlog of 128 connections that the
//! kernel has completed and the process not yet accepted. Beyond it, Linux drops the
//! SYNs of new connections: a burst of callers waits seconds for a retransmit, and a
//! caller whose handshake half-completed can be reset (CI saw one `Connection reset by
//! peer` in a burst of 2,000 calls to an agent). [`bind`] binds as std does, then
//! listens again with [`BACKLOG`].
//!
//! actix-web closes a connection idle for 5 s by default. A client's pool that reuses
//! idle connections for longer (awc up to 15 s, Go's and hyper's 90 s) can send a
//! request on one the server is closing, and that request is lost to a reset. And
//! actix-http checks its keep-alive timer before it reads: once a process frozen past
//! a connection's keep-alive thaws, it closes that connection unread, losing a request
//! a caller sent on it meanwhile. With [`KEEP_ALIVE`] both take a connection idle for
//! 120 s, idle time and freeze together.
//!
//! Each open connection is a file descriptor, and a shell's soft limit is often 1,024
//! (the hard one often 524,288 under systemd, 1,048,576 in Docker). At the limit,
//! actix-server pauses accepting, retrying every 500 ms, until a connection closes,
//! which an idle one kept alive does only after [`KEEP_ALIVE`]: 1,000 callers holding
//! their connections would keep every other caller waiting that long. A service raises
//! its soft limit to the hard one when it starts ([`raise_open_files_limit`]), as Go's
//! `os` package does. Past that, actix-server takes at most 25,600 connections per
//! worker thread.

use std::io;
use std::net::{TcpListener, ToSocketAddrs};
use std::time::Duration;

use socket2::SockRef;

/// Connections the kernel holds, handshake done, until the process accepts them: more
/// than the largest burst the tests send (2,000), and Linux's cap by default
/// (`net.core.somaxconn`, 4,096 since 5.4), which a larger value would not pass.
pub const BACKLOG: u16 = 4096;

/// How long a connection with no request in progress is kept open: longer than common
/// clients' pools reuse an idle connection, so that the server is not the one to close
/// it under a request.
pub const KEEP_ALIVE: Duration = Duration::from_secs(120);

/// Binds `address` (`host:port`, port 0 for any) as `std::net::TcpListener::bind`
/// does, with a listen backlog of [`BACKLOG`].
///
/// # Errors
/// What resolving, binding or listening returns.
pub fn bind(address: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(address)?;
    // Listening again on a listening socket sets its backlog.
    SockRef::from(&listener).listen(i32::from(BACKLOG))?;
    Ok(listener)
}

/// Raises this process's soft limit of open files to its hard limit (what it starts
/// inherits it), and logs the limit it has then; a failure is logged, not fatal: the
/// service still runs, with fewer connections at once.
pub fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(open_files) => tracing::info!(open_files, "open files limit"),
        Err(error) => {
            tracing::warn!(%error, "the open files limit could not be raised to its hard limit");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More connections than std's backlog of 128 complete their handshake while
    /// nothing accepts them.
    #[tokio::test]
    async fn the_kernel_completes_more_handshakes_than_std_backlog_while_none_is_accepted() {
        const CONNECTIONS: usize = 512;
        let listener = bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let mut connects = tokio::task::JoinSet::new();
        for _ in 0..CONNECTIONS {
            connects.spawn(tokio::net::TcpStream::connect(address));
        }
        // A connection whose SYN the kernel dropped retries after 1 s, 3 s, 7 s...;
        // while nothing accepts it never completes, so this wait fails rather than
        // passes late.
        let connected = tokio::time::timeout(Duration::from_secs(20), connects.join_all())
            .await
            .expect("every handshake completes while none is accepted");
        let connected: Vec<_> = connected
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("every connection is made");
        assert_eq!(connected.len(), CONNECTIONS);
        drop(listener);
    }

    #[test]
    fn a_taken_port_is_an_error() {
        let listener = bind("127.0.0.1:0").unwrap();
        let taken = listener.local_addr().unwrap();
        assert_eq!(bind(taken).unwrap_err().kind(), io::ErrorKind::AddrInUse);
    }
}
