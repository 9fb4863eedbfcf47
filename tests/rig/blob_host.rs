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

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::tls::{Conn, ServerCert};
use crate::wire::{read_body, read_head, respond, status_of, write_head, Listener};

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

/// A running blob host. Stops accepting on drop.
pub struct BlobHost {
    listener: Listener,
    tls: bool,
    requests: Arc<Mutex<Vec<BlobHostRequest>>>,
}

impl BlobHost {
    /// Serves files below `root` on a free loopback port until dropped.
    pub fn start(root: PathBuf) -> BlobHost {
        Self::start_with(root, None)
    }

    /// [`BlobHost::start`], over HTTPS with `tls` if given.
    pub fn start_with(root: PathBuf, tls: Option<ServerCert>) -> BlobHost {
        Self::listen(tls, Handler::Files(root))
    }

    fn listen(tls: Option<ServerCert>, handler: Handler) -> BlobHost {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let listener = Listener::start("rig-blob-host", tls, move |conn| {
            serve(conn, &handler, &log)
        });
        BlobHost {
            listener,
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
        format!("{scheme}://{}", self.host())
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
        self.listener.host()
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

/// The refusal S3 gives a presigned URL that also carries `Authorization`.
const ONE_AUTH_MECHANISM: &[u8] = b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified</Message></Error>";

fn serve(
    stream: Conn,
    handler: &Handler,
    log: &Mutex<Vec<BlobHostRequest>>,
) -> std::io::Result<()> {
    // One request per connection, announced with `Connection: close`, so
    // neither side has to track keep-alive state.
    let mut reader = BufReader::new(stream);
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    read_body(&mut reader, &head)?;
    let mut out = reader.into_inner();
    let had_authorization = head.header("authorization").is_some();
    let record = |status| {
        log.lock().expect("blob host log").push(BlobHostRequest {
            method: head.method.clone(),
            path: head.path().to_string(),
            query: head.query().to_string(),
            had_authorization,
            status,
        })
    };
    let root = match handler {
        Handler::Files(root) => root,
        Handler::Script(script) => {
            let answer = script(&head.method, &head.target);
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
    let path = head.path();
    let file = root.join(path.trim_start_matches('/'));
    let safe = !path.contains("..");
    let status = if had_authorization {
        let xml = [("Content-Type", "application/xml".to_string())];
        respond(&mut out, &head, "400 Bad Request", &xml, ONE_AUTH_MECHANISM)?;
        400
    } else if safe && file.is_file() {
        let len = std::fs::metadata(&file)?.len();
        let octets = [("Content-Type", "application/octet-stream".to_string())];
        write_head(&mut out, "200 OK", &octets, len as usize)?;
        if head.method == "GET" {
            std::io::copy(&mut std::fs::File::open(&file)?, &mut out)?;
        }
        out.flush()?;
        200
    } else {
        respond(&mut out, &head, "404 Not Found", &[], b"")?;
        404
    };
    record(status);
    Ok(())
}
