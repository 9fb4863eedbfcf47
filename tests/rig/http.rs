//! Just enough HTTP/1.1 to poke a loopback registry: one request per
//! connection (`Connection: close`), so no pooling or keep-alive parsing.
//! Plain, or TLS to a server presenting a certificate the rig made.

use std::io::{Read, Write};
use std::time::Duration;

use crate::tls::{split_target, Conn};

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
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
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
) -> std::io::Result<RawResponse> {
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
    parse(&raw, method == "HEAD")
}

fn parse(raw: &[u8], head_only: bool) -> std::io::Result<RawResponse> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
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

pub(crate) fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_and_plain() {
        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"abcde");
        let r = parse(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}",
            false,
        )
        .unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.header("content-length")),
            (404, &b"{}"[..], Some("2"))
        );
    }
}
