//! What the backfill's and the full reconcile's run records share: one
//! DynamoDB item per kind of job (key `run`), replaced only by a write
//! conditional on the run it replaces, and counters added with `ADD`
//! conditional on the run's id, so a late step of an earlier run never
//! counts in a later one.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use crate::error::AwsError;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

pub fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

pub fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The item whose `run` is `name`.
pub fn key(name: &str) -> Item {
    HashMap::from([("run".to_string(), s(name))])
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A string attribute of `item`.
pub fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

/// A number attribute of `item`.
pub fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn conditional_failed(e: &AwsError) -> bool {
    e.has_code("ConditionalCheckFailedException")
}

/// A run table: partition key `run` (string).
pub struct RunTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl RunTable {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        RunTable {
            client,
            table: table.into(),
        }
    }

    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    pub fn name(&self) -> &str {
        &self.table
    }

    /// The item `run = name`, read consistently.
    pub async fn get(&self, name: &str) -> Result<Option<Item>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(name)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        Ok(out.item().cloned())
    }

    /// Stores `item` if the item under its key is still run `replaces` (its
    /// `id`), or absent when `replaces` is `None`; `Ok(false)` when another
    /// write came first.
    pub async fn put_replacing(
        &self,
        item: Item,
        replaces: Option<&str>,
    ) -> Result<bool, AwsError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let put = match replaces {
            None => put
                .condition_expression("attribute_not_exists(#run)")
                .expression_attribute_names("#run", "run"),
            Some(old) => put
                .condition_expression("#id = :old")
                .expression_attribute_names("#id", "id")
                .expression_attribute_values(":old", s(old)),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = AwsError::from_sdk("dynamodb:PutItem", e);
                if conditional_failed(&e) {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Adds the non-zero `counts` to run `id`'s item `run = name` and sets
    /// `sets` and `updated_at_ms`; the item after the update, or `None` when
    /// `id` is no longer the current run (nothing is changed).
    pub async fn add(
        &self,
        name: &str,
        id: &str,
        counts: &[(&str, i64)],
        sets: &[(&str, AttributeValue)],
    ) -> Result<Option<Item>, AwsError> {
        let mut names = HashMap::from([
            ("#id".to_string(), "id".to_string()),
            ("#updated".to_string(), "updated_at_ms".to_string()),
        ]);
        let mut values = HashMap::from([
            (":id".to_string(), s(id)),
            (":now".to_string(), n(now_ms() as i64)),
        ]);
        let mut set_clauses = vec!["#updated = :now".to_string()];
        for (i, (attribute, value)) in sets.iter().enumerate() {
            names.insert(format!("#s{i}"), attribute.to_string());
            values.insert(format!(":s{i}"), value.clone());
            set_clauses.push(format!("#s{i} = :s{i}"));
        }
        let mut adds = Vec::new();
        for (i, (attribute, value)) in counts.iter().enumerate() {
            if *value != 0 {
                names.insert(format!("#c{i}"), attribute.to_string());
                values.insert(format!(":c{i}"), n(*value));
                adds.push(format!("#c{i} :c{i}"));
            }
        }
        let mut expression = format!("SET {}", set_clauses.join(", "));
        if !adds.is_empty() {
            expression.push_str(" ADD ");
            expression.push_str(&adds.join(", "));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(name)))
            .update_expression(expression)
            .condition_expression("#id = :id")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(out.attributes().cloned().unwrap_or_default())),
            Err(e) => {
                let e = AwsError::from_sdk("dynamodb:UpdateItem", e);
                if conditional_failed(&e) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }
}
