//! A scripted HTTP/1.1 server for unit tests: one request per connection,
//! answered with whatever raw bytes the handler returns for the request.
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

pub struct TestServer {
    pub url: String,
    /// "METHOD target" of every request, in arrival order.
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    pub fn count(&self, prefix: &str) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|r| r.starts_with(prefix)).count()
    }
}

/// A request as the handler of [`start_with`] sees it.
pub struct Request {
    pub method: String,
    pub target: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer that closes the connection without a word, as a host that
/// fails before answering does.
pub const HANG_UP: &[u8] = b"<hang up>";

pub async fn start(handler: impl Fn(&str, &str) -> Vec<u8> + Send + Sync + 'static) -> TestServer {
    start_with(move |r: &Request| handler(&r.method, &r.target)).await
}

/// Like [`start`], with the request's headers. An empty answer keeps the
/// connection open without a word (a stalled registry).
pub async fn start_with(
    handler: impl Fn(&Request) -> Vec<u8> + Send + Sync + 'static,
) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (log, handler) = (seen.clone(), Arc::new(handler));
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (log, handler) = (log.clone(), handler.clone());
            tokio::spawn(async move {
                let mut r = BufReader::new(sock);
                let mut line = String::new();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let target = parts.next().unwrap_or("").to_string();
                let mut len = 0usize;
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        let k = k.trim().to_ascii_lowercase();
                        if k == "content-length" {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        headers.push((k, v.trim().to_string()));
                    }
                }
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).await.is_err() {
                    return;
                }
                log.lock().unwrap().push(format!("{method} {target}"));
                let answer = handler(&Request {
                    method,
                    target,
                    headers,
                });
                let mut sock = r.into_inner();
                if answer == HANG_UP {
                    return;
                }
                if answer.is_empty() {
                    // Nothing to say: hold the connection, as a stalled registry does.
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                    return;
                }
                let _ = sock.write_all(&answer).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    TestServer { url, seen }
}
