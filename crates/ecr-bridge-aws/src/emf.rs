//! CloudWatch Embedded Metric Format: one JSON line on stdout per flush,
//! which CloudWatch Logs turns into metrics with no API call and no extra
//! latency. Hand-rolled because it is one small, documented JSON shape.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs an invocation's handler with its request id, which every EMF
/// record it flushes then carries (Lambda's own field name, as the JSON
/// log lines have it).
pub async fn in_invocation<F: std::future::Future>(request_id: String, handler: F) -> F::Output {
    // Boxed: a handler's future nested in the scope's inline is too deep a
    // type for the compiler's layout query in the functions' main.
    REQUEST_ID.scope(request_id, Box::pin(handler)).await
}

/// Metrics of one invocation, with one set of dimensions.
#[derive(Debug, Clone)]
pub struct MetricSet {
    namespace: String,
    dimensions: BTreeMap<String, String>,
    values: BTreeMap<String, (f64, &'static str)>,
}

impl MetricSet {
    pub fn new(namespace: impl Into<String>) -> Self {
        MetricSet {
            namespace: namespace.into(),
            dimensions: BTreeMap::new(),
            values: BTreeMap::new(),
        }
    }

    pub fn dimension(mut self, name: &str, value: &str) -> Self {
        self.dimensions.insert(name.to_string(), value.to_string());
        self
    }

    /// Adds to a counter (unit Count).
    pub fn count(&mut self, name: &str, n: u64) {
        self.add(name, n as f64, "Count");
    }

    pub fn add(&mut self, name: &str, value: f64, unit: &'static str) {
        let entry = self.values.entry(name.to_string()).or_insert((0.0, unit));
        entry.0 += value;
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The EMF document; during [`in_invocation`], with its `requestId`
    /// (a plain property, not a dimension: it joins the record to the
    /// invocation's log lines without a metric per request).
    pub fn to_json(&self) -> Value {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let metrics: Vec<Value> = self
            .values
            .iter()
            .map(|(n, (_, unit))| json!({"Name": n, "Unit": unit}))
            .collect();
        let dims: Vec<&String> = self.dimensions.keys().collect();
        let mut doc = Map::new();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{"Namespace": self.namespace, "Dimensions": [dims], "Metrics": metrics}]
            }),
        );
        for (k, v) in &self.dimensions {
            doc.insert(k.clone(), Value::String(v.clone()));
        }
        for (k, (v, _)) in &self.values {
            doc.insert(k.clone(), json!(v));
        }
        if let Ok(id) = REQUEST_ID.try_with(Clone::clone) {
            doc.insert("requestId".into(), Value::String(id));
        }
        Value::Object(doc)
    }

    /// Prints the document as one line on stdout (where Lambda's log agent reads EMF).
    pub fn flush(&self) {
        if !self.is_empty() {
            println!("{}", self.to_json());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn given_an_invocation_when_its_metrics_are_serialised_then_they_carry_its_request_id_and_others_none(
    ) {
        let record = || {
            let mut m = MetricSet::new("ecr-bridge");
            m.count("Replicated", 1);
            m.to_json()
        };

        let inside = in_invocation("8476a536-e9f4-11e8-9739-2dfe598c3fcd".into(), async {
            record()
        })
        .await;
        let outside = record();

        assert_eq!(inside["requestId"], "8476a536-e9f4-11e8-9739-2dfe598c3fcd");
        assert!(outside.get("requestId").is_none(), "{outside}");
    }

    #[test]
    fn given_counts_when_serialised_then_emf_names_each_metric_with_unit_and_value() {
        let mut m = MetricSet::new("ecr-bridge").dimension("Function", "image-replicator");
        m.count("Replicated", 1);
        m.count("Replicated", 2);
        m.add("BytesUploaded", 10.0, "Bytes");
        let doc = m.to_json();
        assert_eq!(doc["Replicated"], 3.0);
        assert_eq!(doc["Function"], "image-replicator");
        let def = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(def["Namespace"], "ecr-bridge");
        assert_eq!(def["Dimensions"][0][0], "Function");
        let names: Vec<&str> = def["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["BytesUploaded", "Replicated"]);
    }
}
