//! The TCP listener a service binds before it builds its server, so that it knows its
//! port (0 lets the OS choose) before anything is started.
//!
//! `std::net::TcpListener::bind` asks for a backlog of 128 connections that the kernel
//! has completed and the process not yet accepted. Beyond it, Linux drops the SYNs of
//! new connections: a burst of callers waits seconds for a retransmit, and a caller
//! whose handshake half-completed can be reset. [`bind`] asks for [`BACKLOG`], what
//! actix-web's own `HttpServer::bind` asks for.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

/// Connections the kernel holds, handshake done, until the process accepts them:
/// actix-web's default. Linux caps it at `net.core.somaxconn` (4096 since 5.4).
pub const BACKLOG: i32 = 2048;

/// Binds `address` (a `host:port`, port 0 for any) with SO_REUSEADDR, as actix-web
/// does, and listens with a backlog of [`BACKLOG`]. The first address `address`
/// resolves to that can be bound wins.
///
/// # Errors
/// What resolving, binding or listening returns; the last address's error when none
/// can be bound.
pub fn bind(address: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last_error = None;
    for address in address.to_socket_addrs()? {
        match bind_one(address) {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the address resolves to none")
    }))
}

fn bind_one(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// More connections than std's backlog of 128 complete their handshake while
    /// nothing accepts them.
    #[tokio::test]
    async fn the_kernel_completes_more_handshakes_than_std_backlog_while_none_is_accepted() {
        const CONNECTIONS: usize = 1_000;
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
        assert_eq!(
            connected.into_iter().filter(Result::is_ok).count(),
            CONNECTIONS
        );
        drop(listener);
    }

    #[test]
    fn a_taken_port_is_an_error() {
        let listener = bind("127.0.0.1:0").unwrap();
        let taken = listener.local_addr().unwrap();
        assert_eq!(bind(taken).unwrap_err().kind(), io::ErrorKind::AddrInUse);
    }
}
