//! The functions' JSON log lines: one object a line, `timestamp`, `level`
//! and the event's `fields` (as tracing-subscriber's JSON format writes
//! them), plus the invocation's `requestId` at the top level, Lambda's own
//! name for it, on every line written inside an invocation. The runtime
//! puts the id on its `Lambda runtime invoke` span; the stock JSON format
//! either drops spans or nests them under `span`/`spans`, where neither
//! CloudWatch Logs Insights nor a reader joining lines to an invocation
//! looks for it.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The span field that carries the invocation's id (lambda_runtime's
/// `request_span`), and the line's field of the same name.
pub(crate) const REQUEST_ID: &str = "requestId";

/// The event format of [`super::init_lambda`] in JSON mode. Needs the JSON
/// field formatter (`.json()`), whose span fields are a JSON object.
pub(crate) struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(timestamp));
        line.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string()),
        );
        line.insert("fields".into(), Value::Object(fields));
        if let Some(id) = request_id(ctx) {
            line.insert(REQUEST_ID.into(), Value::String(id));
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// The nearest enclosing span's `requestId`, read from the JSON its fields
/// were formatted into when it was created.
fn request_id<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<String>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    ctx.event_scope()?.find_map(|span| {
        let extensions = span.extensions();
        let formatted = extensions.get::<FormattedFields<N>>()?;
        let fields: Map<String, Value> = serde_json::from_str(formatted.fields.as_str()).ok()?;
        match fields.get(REQUEST_ID)? {
            Value::String(id) => Some(id.clone()),
            other => Some(other.to_string()),
        }
    })
}

/// An event's fields as JSON values: numbers and booleans as such, the
/// rest as their `Display` (strings) or `Debug` text.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::Bool(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Lines written by a subscriber, kept for the test to read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines(captured: &Captured) -> Vec<Value> {
        String::from_utf8(captured.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    #[test]
    fn given_an_invocation_span_when_lines_are_logged_then_those_inside_carry_its_request_id_at_the_top(
    ) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .event_format(JsonLines)
            .with_writer(move || writer.clone())
            .finish();

        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("before any invocation");
            let invoke = tracing::info_span!("Lambda runtime invoke", requestId = "8f5f-req-1");
            let _in = invoke.enter();
            let inner = tracing::info_span!("copy", repository = "coeus");
            let _inner = inner.enter();
            tracing::warn!(bytes = 42u64, retryable = true, digest = %"sha256:ab", "copied");
        });

        let lines = lines(&captured);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].get(REQUEST_ID), None);
        assert_eq!(lines[0]["fields"]["message"], "before any invocation");
        let copied = &lines[1];
        assert_eq!(copied[REQUEST_ID], "8f5f-req-1");
        assert_eq!(copied["level"], "WARN");
        assert_eq!(copied["fields"]["message"], "copied");
        assert_eq!(copied["fields"]["bytes"], 42);
        assert_eq!(copied["fields"]["retryable"], true);
        assert_eq!(copied["fields"]["digest"], "sha256:ab");
        assert!(copied["timestamp"].as_str().unwrap().contains('T'));
    }
}
