//! A stand-in for the Lambda Runtime API, so a function's real binary runs
//! as it does in a Lambda container: it polls `invocation/next`, gets an
//! event with its request id and deadline, and posts a response or an error.
//! One per process, as each container has its own. Only the calls the Rust
//! runtime makes are served; `next` blocks until an event is queued.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the function answered for one invocation.
#[derive(Debug, Clone)]
pub struct InvocationResult {
    pub request_id: String,
    /// `response` (true) or `error` (false).
    pub ok: bool,
    pub body: String,
}

#[derive(Default)]
struct State {
    queued: VecDeque<(String, Vec<u8>, u64)>,
    results: Vec<InvocationResult>,
    init_errors: Vec<String>,
    next_id: u64,
}

pub struct RuntimeApi {
    port: u16,
    state: Arc<(Mutex<State>, Condvar)>,
}

const PREFIX: &str = "/2018-06-01/runtime/";

impl RuntimeApi {
    pub fn start() -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding runtime API");
        let port = listener.local_addr().expect("runtime API address").port();
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let shared = state.clone();
        std::thread::Builder::new()
            .name("rig-runtime-api".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let shared = shared.clone();
                    std::thread::spawn(move || {
                        let _ = serve(stream, &shared);
                    });
                }
            })
            .expect("starting runtime API");
        RuntimeApi { port, state }
    }

    /// For `AWS_LAMBDA_RUNTIME_API`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Queues an event whose invocation ends `timeout` from now; returns its request id.
    pub fn invoke(&self, event: &[u8], timeout: Duration) -> String {
        let deadline = SystemTime::now() + timeout;
        let ms = deadline
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as u64;
        let (lock, ready) = &*self.state;
        let mut s = lock.lock().expect("runtime API state");
        s.next_id += 1;
        let id = format!("rig-request-{}", s.next_id);
        s.queued.push_back((id.clone(), event.to_vec(), ms));
        ready.notify_all();
        id
    }

    /// Waits until `n` invocations have been answered, or `timeout` passes.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<InvocationResult> {
        let started = Instant::now();
        let (lock, ready) = &*self.state;
        let mut s = lock.lock().expect("runtime API state");
        while s.results.len() < n && s.init_errors.is_empty() {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            s = ready.wait_timeout(s, left).expect("runtime API state").0;
        }
        s.results.clone()
    }

    /// What the function reported failing at start-up, if anything.
    pub fn init_errors(&self) -> Vec<String> {
        self.state
            .0
            .lock()
            .expect("runtime API state")
            .init_errors
            .clone()
    }
}

fn serve(stream: TcpStream, shared: &(Mutex<State>, Condvar)) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(());
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim_end().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let mut out = stream;
    let route = path.strip_prefix(PREFIX).unwrap_or("");
    let (lock, ready) = shared;
    match (method.as_str(), route) {
        ("GET", "invocation/next") => {
            let mut s = lock.lock().expect("runtime API state");
            let (id, event, deadline) = loop {
                if let Some(next) = s.queued.pop_front() {
                    break next;
                }
                s = ready.wait(s).expect("runtime API state");
            };
            drop(s);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: {id}\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:111111111111:function:rig\r\nLambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                event.len()
            );
            out.write_all(head.as_bytes())?;
            out.write_all(&event)?;
        }
        ("POST", r) if r.starts_with("invocation/") => {
            let rest = &r["invocation/".len()..];
            let (id, kind) = rest.split_once('/').unwrap_or((rest, ""));
            let mut s = lock.lock().expect("runtime API state");
            s.results.push(InvocationResult {
                request_id: id.to_string(),
                ok: kind == "response",
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            ready.notify_all();
            drop(s);
            accepted(&mut out)?;
        }
        ("POST", "init/error") => {
            let mut s = lock.lock().expect("runtime API state");
            s.init_errors
                .push(String::from_utf8_lossy(&body).into_owned());
            ready.notify_all();
            drop(s);
            accepted(&mut out)?;
        }
        _ => {
            out.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
        }
    }
    out.flush()
}

fn accepted(out: &mut TcpStream) -> std::io::Result<()> {
    let body = br#"{"status":"OK"}"#;
    let head = format!(
        "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(body)
}
