//! An S3 stand-in for blob downloads. ECR answers blob GETs with a redirect
//! to a presigned S3 URL, and S3 refuses a request that also carries an
//! `Authorization` header ("Only one auth mechanism allowed"). docker-registry
//! can redirect too (its `redirect` storage middleware); this host serves the
//! redirected paths from the registry's storage and refuses, as S3 does, any
//! request with `Authorization`, so a client that leaks credentials across
//! hosts fails here as it would against ECR. Plain HTTP, or HTTPS (as S3
//! is) with a certificate the rig made.
//!
//! [`BlobHost::scripted`] is the same host answering as a script says: an
//! S3 that hangs up before answering a presigned URL, or a registry that
//! sends its client somewhere it must not go, which no real one does on cue.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::tls::{rig_tls, Conn, ServerCert};

/// One request the blob host answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobHostRequest {
    pub method: String,
    pub path: String,
    /// The query string as received (a presigned URL's signature lives here).
    pub query: String,
    pub had_authorization: bool,
    pub status: u16,
}

/// A script's answer to a request (`method`, `target` with its query):
/// the raw HTTP response, or `None` to close the connection without one.
type Script = dyn Fn(&str, &str) -> Option<Vec<u8>> + Send + Sync;

pub struct BlobHost {
    port: u16,
    tls: bool,
    requests: Arc<Mutex<Vec<BlobHostRequest>>>,
}

impl BlobHost {
    /// Serves files below `root` on a free loopback port until the process ends.
    pub fn start(root: PathBuf) -> BlobHost {
        Self::start_with(root, None)
    }

    /// [`BlobHost::start`], over HTTPS with `tls` if given.
    pub fn start_with(root: PathBuf, tls: Option<ServerCert>) -> BlobHost {
        Self::listen(tls, Handler::Files(root))
    }

    fn listen(tls: Option<ServerCert>, handler: Handler) -> BlobHost {
        let config = tls.map(|which| rig_tls().server_config(which));
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding blob host");
        let port = listener.local_addr().expect("blob host address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::Builder::new()
            .name("rig-blob-host".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let (handler, log, config) = (handler.clone(), log.clone(), config.clone());
                    std::thread::spawn(move || {
                        if let Ok(conn) = Conn::accept(stream, config.as_ref()) {
                            let _ = serve(conn, &handler, &log);
                        }
                    });
                }
            })
            .expect("starting blob host");
        BlobHost {
            port,
            tls: tls.is_some(),
            requests,
        }
    }

    /// A host on a free loopback port answering every request as `script`
    /// says (plain HTTP, or HTTPS with `tls`). A status of 0 in
    /// [`BlobHost::requests`] is a request it hung up on.
    pub fn scripted(
        tls: Option<ServerCert>,
        script: impl Fn(&str, &str) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> BlobHost {
        Self::listen(tls, Handler::Script(Arc::new(script)))
    }

    /// `http://127.0.0.1:PORT`, or `https://...` when TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// What [`crate::http_request`] takes: the host when plain, the URL when TLS.
    pub fn target(&self) -> String {
        if self.tls {
            self.url()
        } else {
            self.host()
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<BlobHostRequest> {
        self.requests.lock().expect("blob host log").clone()
    }
}

#[derive(Clone)]
enum Handler {
    /// Files below this directory, S3-like.
    Files(PathBuf),
    Script(Arc<Script>),
}

fn serve(
    stream: Conn,
    handler: &Handler,
    log: &Mutex<Vec<BlobHostRequest>>,
) -> std::io::Result<()> {
    // One request per connection, announced with `Connection: close`, so
    // neither side has to track keep-alive state.
    let mut reader = BufReader::new(stream);
    {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut had_authorization = false;
        let mut content_length = 0usize;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let lower = h.to_ascii_lowercase();
            had_authorization |= lower.starts_with("authorization:");
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut discard = vec![0u8; content_length];
        reader.read_exact(&mut discard)?;
        let mut out = reader.into_inner();
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.clone(), String::new()),
        };
        let record = |status| {
            log.lock().expect("blob host log").push(BlobHostRequest {
                method: method.clone(),
                path: path.clone(),
                query: query.clone(),
                had_authorization,
                status,
            })
        };
        let root = match handler {
            Handler::Files(root) => root,
            Handler::Script(script) => {
                let answer = script(&method, &target);
                // Logged first: the client may see the answer (or the hang-up)
                // and look at the log before this thread runs on.
                let status = answer.as_deref().map_or(0, status_of);
                record(status);
                if let Some(raw) = answer {
                    out.write_all(&raw)?;
                    out.flush()?;
                }
                return Ok(());
            }
        };
        let file = root.join(path.trim_start_matches('/'));
        let safe = !path.contains("..");
        let status = if had_authorization {
            let body = b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified</Message></Error>";
            write!(out, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n", body.len())?;
            out.write_all(body)?;
            400
        } else if safe && file.is_file() {
            let len = std::fs::metadata(&file)?.len();
            write!(out, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n")?;
            if method == "GET" {
                std::io::copy(&mut std::fs::File::open(&file)?, &mut out)?;
            }
            200
        } else {
            write!(
                out,
                "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            )?;
            404
        };
        out.flush()?;
        record(status);
    }
    Ok(())
}

/// The status code of a raw `HTTP/1.1 NNN ...` response.
fn status_of(raw: &[u8]) -> u16 {
    String::from_utf8_lossy(&raw[..raw.len().min(16)])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
