//! Forwarding, and the faults dealt out around it: before the registry sees
//! the request (a reset while the client still sends its body, a 5xx or a
//! 429 instead of the work), or after the registry did the work (a 5xx
//! anyway, a reset or a cut in the middle of the answer, an answer dribbled
//! out slowly).

use std::io::{self, BufRead, Write};
use std::time::Duration;

use super::dice::{cut_at, status_line, Fault};
use super::ecr::Answer;
use super::{bump, error_json, is_blob_upload_put, Shared};
use crate::tls::{split_target, Conn};
use crate::wire::{read_answer, send_request, Head, Upstream};

impl Shared {
    /// With a reset due and a `Content-Length` body on its way: reads part
    /// of it and says the connection is to be reset now.
    pub(super) fn reset_mid_request_body(
        &self,
        reader: &mut impl BufRead,
        head: &Head,
        cut: f64,
    ) -> io::Result<bool> {
        let len = head.content_length();
        if len == 0 || head.chunked() {
            return Ok(false);
        }
        let mut part = vec![0u8; cut_at(len, cut)];
        reader.read_exact(&mut part)?;
        self.dice.note(
            "reset-mid-request-body",
            head,
            &self.counters.resets_mid_body,
        );
        Ok(true)
    }

    /// The answer of a fault dealt instead of the work: a 5xx before the
    /// registry saw the request, or a 429 with `Retry-After`.
    pub(super) fn fault_before_work(&self, fault: Fault, head: &Head) -> Option<Answer> {
        match fault {
            Fault::ServerError {
                status,
                after_work: false,
            } => {
                self.dice.note("5xx", head, &self.counters.server_errors);
                Some(Answer::text(status_line(status), "injected fault"))
            }
            Fault::Throttle => {
                self.dice.note("429", head, &self.counters.throttled);
                Some(Answer {
                    status: "429 Too Many Requests",
                    headers: vec![("Retry-After", self.opts.retry_after_secs.to_string())],
                    body: error_json("TOOMANYREQUESTS", "Rate exceeded"),
                })
            }
            _ => None,
        }
    }

    /// Sends the request to the registry and reads its whole answer.
    pub(crate) fn forward(
        &self,
        head: &Head,
        body: &[u8],
        auth: Option<&str>,
    ) -> io::Result<Upstream> {
        // Location URLs the registry builds must carry our scheme, not its own.
        let forwarded_proto = (split_target(&self.upstream).0 != self.opts.tls.is_some())
            .then_some(("X-Forwarded-Proto", self.scheme()));
        let sent = send_request(
            &self.upstream,
            head,
            body,
            &["authorization"],
            auth,
            forwarded_proto.as_slice(),
        )?;
        bump(&self.counters.forwarded);
        if is_blob_upload_put(head) {
            bump(&self.counters.blob_puts_forwarded);
        }
        if head.method == "PUT" && head.path().contains("/manifests/") {
            bump(&self.counters.manifest_puts_forwarded);
        }
        read_answer(sent)
    }

    /// Forwards the request and passes the registry's answer back, or
    /// deals the after-work `fault` instead.
    pub(super) fn forward_with(
        &self,
        fault: Fault,
        mut out: Conn,
        head: &Head,
        body: &[u8],
        auth: Option<&str>,
    ) -> io::Result<()> {
        let resp = match self.forward(head, body, auth) {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("proxy: upstream failed: {e}");
                return Answer::text("502 Bad Gateway", &msg).send(&mut out, head);
            }
        };
        let resp = self.unalias_tag_list(head, resp);
        let c = &self.counters;
        match fault {
            Fault::ServerError {
                status,
                after_work: true,
            } => {
                self.dice.note("5xx-after-work", head, &c.server_errors);
                bump(&c.server_errors_after_work);
                Answer::text(status_line(status), "injected fault").send(&mut out, head)
            }
            Fault::Reset { cut } => {
                if resp.body.is_empty() {
                    self.dice.note("reset", head, &c.resets_without_body);
                    return out.reset();
                }
                self.dice
                    .note("reset-mid-response-body", head, &c.resets_mid_body);
                send_part(&mut out, &resp, cut)?;
                // Let the client read what was sent, so the reset lands mid-body.
                std::thread::sleep(Duration::from_millis(10));
                out.reset()
            }
            Fault::Truncate { cut } if !resp.body.is_empty() => {
                self.dice.note("truncated", head, &c.truncated);
                send_part(&mut out, &resp, cut)?;
                out.shutdown_write()
            }
            Fault::Slow => {
                self.dice.note("slow", head, &c.slow);
                let step = self.opts.slow_delay / 4;
                std::thread::sleep(step * 2);
                out.write_all(&resp.head)?;
                for piece in resp.body.chunks(resp.body.len().div_ceil(2).max(1)) {
                    std::thread::sleep(step);
                    out.write_all(piece)?;
                    out.flush()?;
                }
                Ok(())
            }
            _ => resp.send(&mut out),
        }
    }
}

/// The head and the first `cut` of the body.
fn send_part(out: &mut Conn, resp: &Upstream, cut: f64) -> io::Result<()> {
    out.write_all(&resp.head)?;
    out.write_all(&resp.body[..cut_at(resp.body.len(), cut)])?;
    out.flush()
}
