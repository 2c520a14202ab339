//! HTTP/1.1 on a bare TCP stream, for the benches: the least a client can add to what
//! is measured (no pool, no parsing beyond the Content-Length of the answer).

use damrey_actors::Message;

/// A fresh connection to `address` with Nagle off.
pub async fn connect(address: &str) -> tokio::net::TcpStream {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("the agent listens");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Writes one request and reads one response (Content-Length bodies only); `None` when
/// the connection turns out to be closed.
pub async fn exchange(stream: &mut tokio::net::TcpStream, request: &[u8]) -> Option<Message> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await.ok()?;
    let mut buffer = Vec::with_capacity(512);
    loop {
        let mut chunk = [0u8; 512];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            assert!(
                buffer.is_empty(),
                "the agent closed the connection mid-response"
            );
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buffer[..head_end]).expect("ascii head");
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .expect("content-length");
        let body = &buffer[head_end + 4..];
        if body.len() >= length {
            return Some(Message::from_json_slice(&body[..length]).expect("a message"));
        }
    }
}
