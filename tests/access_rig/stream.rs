//! moto's DynamoDB Streams API, read as Lambda's event source mapping
//! reads it.

use std::collections::HashMap;

use serde_json::{json, Value};

/// Reads the table's stream from moto (GetShardIterator + GetRecords, the
/// DynamoDB Streams API) and wraps new records as Lambda delivers them.
/// Plain HTTP: moto does not check signatures, and the workspace has no
/// DynamoDB Streams SDK.
pub struct StreamTap {
    http: reqwest::Client,
    moto: String,
    arn: String,
    after: HashMap<String, String>,
}

impl StreamTap {
    /// The stream `arn` of moto at `moto_url`, from its start.
    pub fn new(moto_url: String, arn: String) -> StreamTap {
        StreamTap {
            http: reqwest::Client::new(),
            moto: moto_url,
            arn,
            after: HashMap::new(),
        }
    }

    async fn call(&self, operation: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(&self.moto)
            .header("X-Amz-Target", format!("DynamoDBStreams_20120810.{operation}"))
            .header("Content-Type", "application/x-amz-json-1.0")
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDTESTONLY/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .expect("moto stream API");
        let status = resp.status();
        let text = resp.text().await.expect("stream API body");
        assert!(status.is_success(), "{operation}: {status} {text}");
        serde_json::from_str(&text).expect("stream API JSON")
    }

    /// Every record since the last call, as `{"Records": [...]}`.
    pub async fn next_batch(&mut self) -> Value {
        let description = self
            .call("DescribeStream", json!({"StreamArn": self.arn}))
            .await;
        let shards: Vec<String> = description["StreamDescription"]["Shards"]
            .as_array()
            .expect("shards")
            .iter()
            .map(|s| s["ShardId"].as_str().expect("shard id").to_string())
            .collect();
        let mut records = Vec::new();
        for shard in shards {
            let request = match self.after.get(&shard) {
                Some(seq) => json!({"StreamArn": self.arn, "ShardId": shard,
                    "ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": seq}),
                None => {
                    json!({"StreamArn": self.arn, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"})
                }
            };
            let mut iterator =
                self.call("GetShardIterator", request).await["ShardIterator"].clone();
            while let Some(it) = iterator.as_str().map(str::to_string) {
                let page = self
                    .call("GetRecords", json!({"ShardIterator": it, "Limit": 1000}))
                    .await;
                let got = page["Records"].as_array().cloned().unwrap_or_default();
                if got.is_empty() {
                    break;
                }
                for mut r in got {
                    if let Some(seq) = r["dynamodb"]["SequenceNumber"].as_str() {
                        self.after.insert(shard.clone(), seq.to_string());
                    }
                    // What Lambda's event source mapping adds to each record.
                    r["eventSourceARN"] = json!(self.arn);
                    records.push(r);
                }
                iterator = page["NextShardIterator"].clone();
            }
        }
        json!({ "Records": records })
    }
}
