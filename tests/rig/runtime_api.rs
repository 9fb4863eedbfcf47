//! A stand-in for the Lambda Runtime API, so a function's real binary runs
//! as it does in a Lambda container: it polls `invocation/next`, gets an
//! event with its request id and deadline, and posts a response or an error.
//! One per process, as each container has its own. Only the calls the Rust
//! runtime makes are served; `next` blocks until an event is queued.

use std::collections::VecDeque;
use std::io::BufReader;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::tls::Conn;
use crate::wire::{read_body, read_head, respond, Listener};

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

/// A running Runtime API. Stops accepting on drop.
pub struct RuntimeApi {
    listener: Listener,
    state: Arc<(Mutex<State>, Condvar)>,
}

const PREFIX: &str = "/2018-06-01/runtime/";

impl RuntimeApi {
    pub fn start() -> RuntimeApi {
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let shared = state.clone();
        let listener = Listener::start("rig-runtime-api", None, move |conn| serve(conn, &shared));
        RuntimeApi { listener, state }
    }

    /// For `AWS_LAMBDA_RUNTIME_API`.
    pub fn host(&self) -> String {
        self.listener.host()
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

fn serve(stream: Conn, shared: &(Mutex<State>, Condvar)) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    let body = read_body(&mut reader, &head)?;
    let mut out = reader.into_inner();
    let route = head.path().strip_prefix(PREFIX).unwrap_or("");
    let (lock, ready) = shared;
    match (head.method.as_str(), route) {
        ("GET", "invocation/next") => {
            let mut s = lock.lock().expect("runtime API state");
            let (id, event, deadline) = loop {
                if let Some(next) = s.queued.pop_front() {
                    break next;
                }
                s = ready.wait(s).expect("runtime API state");
            };
            drop(s);
            let headers = [
                ("Content-Type", "application/json".to_string()),
                ("Lambda-Runtime-Aws-Request-Id", id),
                ("Lambda-Runtime-Deadline-Ms", deadline.to_string()),
                (
                    "Lambda-Runtime-Invoked-Function-Arn",
                    "arn:aws:lambda:us-east-1:111111111111:function:rig".to_string(),
                ),
                (
                    "Lambda-Runtime-Trace-Id",
                    "Root=1-00000000-000000000000000000000000".to_string(),
                ),
            ];
            respond(&mut out, &head, "200 OK", &headers, &event)
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
            accepted(&mut out, &head)
        }
        ("POST", "init/error") => {
            let mut s = lock.lock().expect("runtime API state");
            s.init_errors
                .push(String::from_utf8_lossy(&body).into_owned());
            ready.notify_all();
            drop(s);
            accepted(&mut out, &head)
        }
        _ => respond(&mut out, &head, "404 Not Found", &[], b""),
    }
}

fn accepted(out: &mut Conn, head: &crate::wire::Head) -> std::io::Result<()> {
    let json = [("Content-Type", "application/json".to_string())];
    respond(out, head, "202 Accepted", &json, br#"{"status":"OK"}"#)
}
