//! HTTP/1.1 written and read by hand on a TCP stream, for tests that must hold the
//! connection: send on it while a process is frozen, or send again on the same one.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A request that keeps its connection open: `method path`, with `body` as JSON.
pub fn request(method: &str, address: &str, path: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads one response with a `Content-Length` from `stream`: its status and its body.
/// Bytes read past it (a pipelined next response) are dropped.
///
/// # Panics
/// When the connection ends or fails before the whole response, or the response is not
/// one.
pub async fn read_response(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut answer = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        if let Some(end) = answer.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: ")?.parse().ok())
                .expect("a content length");
            let body = &answer[end + 4..];
            if body.len() >= length {
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|status| status.parse().ok());
                return (status.expect("a status"), body[..length].to_vec());
            }
        }
        let read = stream.read(&mut chunk).await.expect("answered");
        assert!(
            read > 0,
            "the connection ended before its response: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&chunk[..read]);
    }
}
