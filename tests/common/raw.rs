//! A raw HTTP/1.1 client on `std::net::TcpStream`: requests go out as the
//! exact bytes given (malformed ones included), answers are parsed as
//! they come, several on one connection if need be.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// An answer read off a raw connection.
#[derive(Clone)]
pub struct RawReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

impl std::fmt::Debug for RawReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} {}",
            self.status,
            self.header("content-type"),
            Shown(&self.body)
        )
    }
}

/// Bytes printed escaped and cut short, for messages.
pub struct Shown<'a>(pub &'a [u8]);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MAX: usize = 160;
        let cut = &self.0[..self.0.len().min(MAX)];
        write!(f, "b\"{}\"", cut.escape_ascii())?;
        if self.0.len() > MAX {
            write!(f, "...({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

/// Raw request bytes (a generated body or request), printed short.
#[derive(Clone)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", Shown(&self.0))
    }
}

/// A well-formed request: `Host`, `Content-Length` and `Connection: close`
/// are added; `headers` come on top.
pub fn http_request(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Parses one complete response at the start of `buf`; `eof` says the
/// connection is closed (a body without length then ends there). Returns
/// the response and how many bytes it took, or `None` if incomplete.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<(RawReply, usize)>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut reply = RawReply {
        status,
        headers,
        body: Vec::new(),
    };
    let rest = &buf[end + 4..];
    if reply
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        let mut at = 0;
        loop {
            let Some(line_end) = rest[at..].windows(2).position(|w| w == b"\r\n") else {
                return Ok(None);
            };
            let size_text = std::str::from_utf8(&rest[at..at + line_end]).unwrap_or("?");
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            at += line_end + 2;
            if size == 0 {
                // Trailers are not used by the server; the final CRLF ends it.
                if rest.len() < at + 2 {
                    return Ok(None);
                }
                return Ok(Some((reply, end + 4 + at + 2)));
            }
            if rest.len() < at + size + 2 {
                return Ok(None);
            }
            reply.body.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
    }
    let length = match reply.header("content-length") {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| format!("bad Content-Length {l:?}"))?,
        ),
        None if status < 200 || status == 204 || status == 304 => Some(0),
        None => None,
    };
    match length {
        Some(n) if rest.len() >= n => {
            reply.body = rest[..n].to_vec();
            Ok(Some((reply, end + 4 + n)))
        }
        Some(_) => Ok(None),
        None if eof => {
            reply.body = rest.to_vec();
            Ok(Some((reply, buf.len())))
        }
        None => Ok(None),
    }
}

/// How a raw exchange ended without a complete answer.
#[derive(Debug, PartialEq)]
pub enum RawError {
    /// Nothing complete within the time allowed.
    Timeout,
    /// The connection was reset.
    Reset,
    /// The server closed the connection; what it had sent.
    Closed(String),
    /// Anything else.
    Other(String),
}

/// Connects to `addr`, with read and write timeouts.
pub fn connect(addr: &str, timeout: Duration) -> TcpStream {
    let sock: std::net::SocketAddr = addr.parse().expect("a loopback socket address");
    let stream = TcpStream::connect_timeout(&sock, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    stream.set_nodelay(true).expect("nodelay");
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    stream.set_write_timeout(Some(timeout)).expect("timeout");
    stream
}

/// Reads `count` complete responses off `stream`, until `deadline`.
pub fn read_responses(
    stream: &mut TcpStream,
    count: usize,
    deadline: Instant,
) -> Result<Vec<RawReply>, RawError> {
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    let mut eof = false;
    loop {
        while replies.len() < count {
            match parse_response(&buf, eof).map_err(RawError::Other)? {
                Some((reply, used)) => {
                    replies.push(reply);
                    buf.drain(..used);
                }
                None => break,
            }
        }
        if replies.len() == count {
            return Ok(replies);
        }
        if eof {
            return Err(RawError::Closed(format!(
                "after {} complete responses: {}",
                replies.len(),
                Shown(&buf)
            )));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RawError::Timeout);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| RawError::Other(e.to_string()))?;
        match stream.read(&mut chunk) {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(RawError::Timeout)
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Err(RawError::Reset),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(RawError::Other(e.to_string())),
        }
    }
}

/// Sends `request` on a fresh connection (writing from another thread, so
/// that an answer sent before the body is all read is seen) and reads
/// `count` responses.
pub fn exchange_many(
    addr: &str,
    request: &[u8],
    count: usize,
    timeout: Duration,
) -> Result<Vec<RawReply>, RawError> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(addr, timeout);
    let mut writer = stream.try_clone().expect("clone the stream");
    std::thread::scope(|s| {
        // A write error (the server answered early and closed) is fine:
        // what matters is the answer.
        s.spawn(move || {
            let _ = writer.write_all(request);
            let _ = writer.flush();
        });
        let replies = read_responses(&mut stream, count, deadline);
        // Unblocks the writer if the server stopped reading.
        let _ = stream.shutdown(Shutdown::Both);
        replies
    })
}

/// One request, one answer.
pub fn exchange(addr: &str, request: &[u8], timeout: Duration) -> Result<RawReply, RawError> {
    exchange_many(addr, request, 1, timeout).map(|mut r| r.remove(0))
}
