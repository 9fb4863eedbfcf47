//! An S3 stand-in for blob downloads. ECR answers blob GETs with a redirect
//! to a presigned S3 URL, and S3 refuses a request that also carries an
//! `Authorization` header ("Only one auth mechanism allowed"). docker-registry
//! can redirect too (its `redirect` storage middleware); this host serves the
//! redirected paths from the registry's storage and refuses, as S3 does, any
//! request with `Authorization`, so a client that leaks credentials across
//! hosts fails here as it would against ECR. Plain HTTP, or HTTPS (as S3
//! is) with a certificate the rig made.

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
    pub had_authorization: bool,
    pub status: u16,
}

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
        let config = tls.map(|which| rig_tls().server_config(which));
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding blob host");
        let port = listener.local_addr().expect("blob host address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::Builder::new()
            .name("rig-blob-host".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let (root, log, config) = (root.clone(), log.clone(), config.clone());
                    std::thread::spawn(move || {
                        if let Ok(conn) = Conn::accept(stream, config.as_ref()) {
                            let _ = serve(conn, &root, &log);
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

fn serve(
    stream: Conn,
    root: &std::path::Path,
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
        let path = target.split('?').next().unwrap_or("").to_string();
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
        log.lock().expect("blob host log").push(BlobHostRequest {
            method,
            path,
            had_authorization,
            status,
        });
    }
    Ok(())
}
