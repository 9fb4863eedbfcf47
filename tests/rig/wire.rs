//! The rig's HTTP/1.1, both ways, for every server and client it has: the
//! fault front and the AWS front (which read requests, answer some
//! themselves and pass the rest on), the blob host, the Lambda Runtime API
//! stand-in, and the raw requests of tests ([`crate::http_request`],
//! [`crate::Registry::http`]).
//!
//! Hand-written on purpose: a front must see, and sometimes break, the bytes
//! as they are. One request per connection (`Connection: close` both ways);
//! bodies are buffered whole (a chunked request body arrives de-chunked),
//! built for test-sized payloads, not for speed. Plain, or TLS through
//! [`Conn`].

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::tls::{rig_tls, split_target, Conn, ServerCert};

// ---------------------------------------------------------------------------
// Requests, as a server reads them

/// A request head as received.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: String,
    /// The request target: path and query string.
    pub target: String,
    /// Names as received; [`Head::header`] looks them up case-insensitively.
    pub headers: Vec<(String, String)>,
}

/// The value of header `name` (any case) among `headers`.
fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query string, without its `?` (empty when there is none).
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    pub fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    pub fn content_length(&self) -> usize {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Reads a request line and its headers; `None` when the peer closed first.
pub fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some(Head {
        method,
        target,
        headers,
    }))
}

/// Reads the body `head` announces: `Content-Length` bytes, or the chunks
/// of a chunked body (joined, trailers dropped).
pub fn read_body(reader: &mut impl BufRead, head: &Head) -> io::Result<Vec<u8>> {
    if !head.chunked() {
        let mut body = vec![0u8; head.content_length()];
        reader.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if n == 0 {
            // Trailers, then the empty line.
            loop {
                let mut t = String::new();
                if reader.read_line(&mut t)? == 0 || t.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + n, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

// ---------------------------------------------------------------------------
// Answers, as a server writes them

/// Writes a status line ("200 OK"), `headers`, `Content-Length: len` and
/// `Connection: close`, then the empty line: the body is the caller's.
pub fn write_head(
    out: &mut impl Write,
    status: &str,
    headers: &[(&str, String)],
    len: usize,
) -> io::Result<()> {
    let mut text = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str(&format!(
        "Content-Length: {len}\r\nConnection: close\r\n\r\n"
    ));
    out.write_all(text.as_bytes())
}

/// Writes a whole answer to `head`: a HEAD gets the headers only.
pub fn respond(
    out: &mut impl Write,
    head: &Head,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> io::Result<()> {
    write_head(out, status, headers, body.len())?;
    if head.method != "HEAD" {
        out.write_all(body)?;
    }
    out.flush()
}

/// The status code of a raw `HTTP/1.1 NNN ...` answer (0 if none).
pub fn status_of(raw: &[u8]) -> u16 {
    String::from_utf8_lossy(&raw[..raw.len().min(16)])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Passing a request on

/// Sends a request on to `upstream` ("127.0.0.1:PORT", or
/// "https://127.0.0.1:PORT" for TLS) with its headers as received, less
/// hop-by-hop ones and those named in `drop` (lower case), plus
/// `Authorization: auth` if given and `extra`. The body goes with
/// `Content-Length` (a chunked request arrives de-chunked). `Host` stays the
/// client's, so Location URLs upstream builds point back at the front.
pub(crate) fn send_request(
    upstream: &str,
    head: &Head,
    body: &[u8],
    drop: &[&str],
    auth: Option<&str>,
    extra: &[(&str, &str)],
) -> io::Result<Conn> {
    let mut up = Conn::connect(upstream)?;
    up.tcp().set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut text = format!("{} {} HTTP/1.1\r\n", head.method, head.target);
    for (k, v) in &head.headers {
        let lower = k.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "connection" | "keep-alive" | "content-length" | "transfer-encoding"
        ) || drop.contains(&lower.as_str())
        {
            continue;
        }
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(a) = auth {
        text.push_str(&format!("Authorization: {a}\r\n"));
    }
    for (k, v) in extra {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(head.method.as_str(), "PUT" | "POST" | "PATCH") {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("Connection: close\r\n\r\n");
    up.write_all(text.as_bytes())?;
    up.write_all(body)?;
    up.flush()?;
    Ok(up)
}

/// An upstream answer as it will be passed back: the head with
/// `Connection: close` (ending in the empty line), and the body bytes as
/// framed upstream.
pub struct Upstream {
    pub head: Vec<u8>,
    pub body: Vec<u8>,
}

impl Upstream {
    pub fn status(&self) -> u16 {
        status_of(&self.head)
    }

    /// Sends it on, whole.
    pub fn send(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.head)?;
        out.write_all(&self.body)?;
        out.flush()
    }
}

/// Reads upstream's whole answer to a request sent with `Connection: close`.
pub(crate) fn read_answer(up: Conn) -> io::Result<Upstream> {
    let mut reader = BufReader::new(up);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    if status_line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "upstream closed without answering",
        ));
    }
    let mut out_head = status_line.trim_end().to_string() + "\r\n";
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        if name != "connection" && name != "keep-alive" {
            out_head.push_str(line);
            out_head.push_str("\r\n");
        }
    }
    out_head.push_str("Connection: close\r\n\r\n");
    // Upstream closes after its answer (we asked it to), so the rest of the
    // stream is the body, whatever its framing.
    let mut body = Vec::new();
    reader.read_to_end(&mut body)?;
    Ok(Upstream {
        head: out_head.into_bytes(),
        body,
    })
}

/// [`send_request`], then [`read_answer`].
pub fn exchange(
    upstream: &str,
    head: &Head,
    body: &[u8],
    drop: &[&str],
    auth: Option<&str>,
) -> io::Result<Upstream> {
    read_answer(send_request(upstream, head, body, drop, auth, &[])?)
}

// ---------------------------------------------------------------------------
// A client's request and its parsed answer

/// A parsed response. Header names are kept as received; use [`RawResponse::header`]
/// for case-insensitive lookup.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
}

/// Sends one request to `target` ("127.0.0.1:PORT" or "http://...": plain;
/// "https://127.0.0.1:PORT": TLS) and reads the whole response.
pub fn request(
    target: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<RawResponse> {
    let host = split_target(target).1;
    let mut stream = Conn::connect(target)?;
    // Generous: a blob GET of a big layer on a busy 2-core box can be slow,
    // but a hung registry must not hang the test forever.
    stream
        .tcp()
        .set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "PUT" | "POST" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw, method == "HEAD")
}

/// Parses a whole answer read up to the connection's end; with `head_only`
/// (the answer to a HEAD) the body is left empty.
pub fn parse_response(raw: &[u8], head_only: bool) -> io::Result<RawResponse> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers in response"))?;
    let text = std::str::from_utf8(&raw[..end]).map_err(|_| bad("non-UTF-8 headers"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let mut resp = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only {
        return Ok(resp);
    }
    resp.body = if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(rest).ok_or_else(|| bad("malformed chunked body"))?
    } else {
        rest.to_vec()
    };
    Ok(resp)
}

/// The payload of a whole chunked body; `None` if it is malformed or cut.
pub fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------
// Serving

/// A server of the rig's on a free loopback port: one thread accepting, one
/// thread per connection, each connection (TLS with a certificate, else
/// plain) handed to the handler with a 60 s read timeout. Stops accepting
/// when dropped.
pub(crate) struct Listener {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Listener {
    /// Binds 127.0.0.1:0 and serves every connection with `handle` (its
    /// error, a connection gone wrong, is dropped). `name` names the thread.
    pub(crate) fn start(
        name: &str,
        tls: Option<ServerCert>,
        handle: impl Fn(Conn) -> io::Result<()> + Send + Sync + 'static,
    ) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("binding the {name} listener: {e}"));
        let port = listener.local_addr().expect("listener address").port();
        let config = tls.map(|which| rig_tls().server_config(which));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let handle = Arc::new(handle);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (handle, config) = (handle.clone(), config.clone());
                    std::thread::spawn(move || {
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                        if let Ok(conn) = Conn::accept(stream, config.as_ref()) {
                            let _ = handle(conn);
                        }
                    });
                }
            })
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Listener { port, stop }
    }

    /// "127.0.0.1:PORT".
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.host());
    }
}

/// A loopback port held for one rig server until the lease is dropped.
///
/// Binding port 0 and releasing it is not enough: nextest runs each test in
/// its own process, two of them can be handed the same port, and the loser's
/// server then fails to bind while its readiness probe is answered by the
/// winner's. The two tests share one moto until the winner ends and takes it
/// away mid-test (CI saw `GetAuthorizationToken` fail with the front's 502).
/// So a port is also locked (`flock`, released by the kernel when the process
/// dies) in a directory every rig process shares.
#[derive(Debug)]
pub(crate) struct PortLease {
    port: u16,
    _lock: std::fs::File,
}

impl PortLease {
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

/// A loopback port free when asked and leased to the caller (someone outside
/// the rig may still take it before it is bound: callers that bind later
/// retry).
pub(crate) fn free_port() -> PortLease {
    use std::os::fd::AsRawFd;
    let dir = std::env::temp_dir().join("rig-ports");
    std::fs::create_dir_all(&dir).expect("creating the rig's port lock directory");
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding 127.0.0.1:0")
            .port();
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
            .expect("opening a port lock file");
        // SAFETY: flock only reads the descriptor, which `lock` owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return PortLease { port, _lock: lock };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_and_plain() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"abcde");
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}",
            false,
        )
        .unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.header("content-length")),
            (404, &b"{}"[..], Some("2"))
        );
    }

    #[test]
    fn given_a_chunked_request_when_read_then_head_and_joined_body_and_the_next_request_follows() {
        let raw = b"POST /x?a=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let mut reader = BufReader::new(&raw[..]);
        let head = read_head(&mut reader).unwrap().unwrap();
        assert_eq!(
            (head.method.as_str(), head.path(), head.query()),
            ("POST", "/x", "a=1")
        );
        assert!(head.chunked() && head.header("HOST") == Some("h"));
        assert_eq!(read_body(&mut reader, &head).unwrap(), b"abcde");
        let next = read_head(&mut reader).unwrap().unwrap();
        assert_eq!((next.method.as_str(), next.target.as_str()), ("GET", "/"));
        assert!(read_head(&mut reader).unwrap().is_none());
        assert_eq!(status_of(b"HTTP/1.1 307 Temporary Redirect\r\n"), 307);
        assert_eq!(status_of(b""), 0);
    }
}
