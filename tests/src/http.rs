//! A blocking HTTP/1.1 client just large enough for the tests: sirend's API, Prometheus's and
//! Alertmanager's. One request per connection; chunked bodies are decoded.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};

/// A response: status code, headers and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first header named `name` (in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// `GET path` from the loopback address `from` (load harnesses spread their clients over
/// addresses: the daemon serves at most 64 connections from one).
pub fn get_from(from: std::net::Ipv4Addr, addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((from, 0)).into())?;
    socket.connect(&addr.into())?;
    exchange(socket.into(), addr, "GET", path, None, "application/json", "")
}

/// Sends `method path` with an optional bearer token and a body of `content_type`.
pub fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &str,
) -> std::io::Result<Response> {
    exchange(TcpStream::connect(addr)?, addr, method, path, token, content_type, body)
}

fn exchange(
    mut s: TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &str,
) -> std::io::Result<Response> {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of the response head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let payload = &raw[split + 4..];
    let body = if chunked { dechunk(payload)? } else { payload.to_vec() };
    Ok(Response { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

fn dechunk(mut rest: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end =
            rest.windows(2).position(|w| w == b"\r\n").ok_or_else(|| std::io::Error::other("truncated chunk size"))?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| std::io::Error::other(format!("bad chunk size {size_text:?}: {e}")))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or_else(|| std::io::Error::other("truncated chunk"))?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

/// A JSON request to sirend; panics on a connection error.
pub fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> Response {
    send(addr, method, path, token, "application/json", body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A GET; panics on a connection error.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, None, "")
}

/// A form POST (`key=value&...`, encoded here).
pub fn post_form(addr: SocketAddr, path: &str, fields: &[(&str, &str)]) -> std::io::Result<Response> {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    send(addr, "POST", path, None, "application/x-www-form-urlencoded", &body)
}
